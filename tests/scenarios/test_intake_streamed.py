"""Big files over the wire: streamed from Slack into OpenAI's Uploads API while they download.

A file is completed at OpenAI only after its last byte passed every check; any failure, and a stopped turn,
leaves the Upload cancelled and no File behind, and the thread gets the usual short message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.analysis.workspace import PARTS_IN_FLIGHT
from bot.turn.chart_font import FONT_FILENAME
from bot.turn.intake import PART_BYTES, STREAM_MIN_BYTES
from tests.conftest import answer_texts, run_bot, user_file_ids, user_uploads
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.fakes.tcp_proxy import TcpProxy

HEADER = "id,이름,점수,메모\n"
ROWS_PER_BLOCK = 10_000


def big_csv(min_bytes: int) -> str:
    """A UTF-8 CSV text of at least `min_bytes` bytes, Korean and ASCII, with numbered rows."""
    parts, size, row = [HEADER], len(HEADER.encode()), 1
    while size < min_bytes:
        block = "".join(
            f"{i},김민준{i % 97},{i % 101},재구매 의사 있음 VIP customer\n" for i in range(row, row + ROWS_PER_BLOCK)
        )
        parts.append(block)
        size += len(block.encode())
        row += ROWS_PER_BLOCK
    return "".join(parts)


def rows_of(text: str) -> int:
    return text.count("\n") - 1


async def share(slack: FakeSlack, file: dict[str, Any], text: str = "<@UBOT> 분석해줘") -> str:
    return str((await slack.user_posts(channel="C1", text=text, files=[file]))["ts"])


def upload_records(oai: FakeOpenAI) -> list[dict[str, Any]]:
    return [record["object"] for record in oai.uploads.values()]


def part_requests(oai: FakeOpenAI) -> list[Any]:
    return [r for r in oai.requests_to("POST", "/v1/uploads/") if r.path.endswith("/parts")]


def completes(oai: FakeOpenAI) -> list[Any]:
    return [r for r in oai.requests_to("POST", "/v1/uploads/") if r.path.endswith("/complete")]


def container_contents(oai: FakeOpenAI) -> dict[str, bytes]:
    """What the code interpreter sees of the users' files: container path -> bytes."""
    return {
        f["object"]["path"]: f["content"]
        for record in oai.containers.values()
        for f in record["files"].values()
        if f["object"]["source"] == "user" and f["object"]["path"] != f"/mnt/data/{FONT_FILENAME}"
    }


def assert_cancelled_and_nothing_used(oai: FakeOpenAI) -> None:
    uploads = upload_records(oai)
    assert [u["status"] for u in uploads] == ["cancelled"], "the half-sent upload is cancelled"
    assert not completes(oai), "never completed"
    assert user_file_ids(oai, list(oai.files)) == [], "no File made of it"
    assert container_contents(oai) == {}, "nothing reaches code interpreter"


async def test_a_big_utf8_file_streams_through_the_uploads_api_and_the_model_sees_it_whole(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    text = big_csv(STREAM_MIN_BYTES + 3 * PART_BYTES // 2)
    data = text.encode()
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, slack.add_file(name="sales.csv", content=data))
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1, timeout=60)
    assert answer_texts(slack, "C1", ts)[0].startswith("Echo:")
    [upload] = upload_records(oai)
    assert (upload["status"], upload["bytes"], upload["filename"]) == ("completed", len(data), "sales.csv")
    assert len(part_requests(oai)) >= 3, "sent in parts"
    assert all(r.form["data"]["bytes"] <= 64 * 1024 * 1024 for r in part_requests(oai))
    assert user_uploads(oai) == [], "no second, whole-file upload"
    assert oai.files[upload["file"]["id"]]["content"] == data
    assert container_contents(oai) == {"/mnt/data/sales.csv": data}, "code interpreter has the whole file"
    prompt = str(oai.requests_to("POST", "/v1/responses")[0].json["input"][0]["content"][0]["text"])
    assert f"{rows_of(text)} data rows" in prompt and "4 columns: id, 이름, 점수, 메모" in prompt


async def test_a_download_that_breaks_midway_cancels_the_upload(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    data = big_csv(STREAM_MIN_BYTES + 4 * PART_BYTES).encode()
    oai.hold_parts = asyncio.Event()  # a slow OpenAI: the bot cannot read far ahead (back-pressure)
    port = int(slack.base_url.rsplit(":", 1)[1])
    async with TcpProxy("127.0.0.1", port) as proxy, run_bot(slack, oai, sqlite_url):
        file = slack.add_file(name="sales.csv", content=data)
        file["url_private_download"] = file["url_private_download"].replace(f":{port}/", f":{proxy.port}/")
        ts = await share(slack, file)
        await oai.wait_for(lambda: len(part_requests(oai)) == PARTS_IN_FLIGHT, timeout_s=30)
        await proxy.down()  # the connection to Slack's file host breaks mid-way
        oai.hold_parts.set()
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1, timeout=30)
    assert "`sales.csv` 파일을 Slack에서 내려받지 못했습니다" in answer_texts(slack, "C1", ts)[0]
    assert_cancelled_and_nothing_used(oai)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            lambda text: (text.encode(), {"size": len(text.encode()) - PART_BYTES}),
            "`sales.csv` 파일을 Slack에서 내려받지 못했습니다",
            id="longer-than-declared",
        ),
        pytest.param(
            lambda text: (text.encode() + b"\x00\x01\x02\x03" * 1000 + b"\n", {}),
            "`sales.csv` 형식은 분석할 수 없습니다",
            id="binary-content-found-late",
        ),
    ],
)
async def test_a_check_that_fails_late_cancels_the_upload(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, make: Any, expected: str
) -> None:
    data, overrides = make(big_csv(STREAM_MIN_BYTES + 2 * PART_BYTES))
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, slack.add_file(name="sales.csv", content=data, **overrides))
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1, timeout=60)
    assert expected in answer_texts(slack, "C1", ts)[0]
    assert part_requests(oai), "the file was on its way when the check failed"
    assert_cancelled_and_nothing_used(oai)


async def test_an_html_page_in_place_of_a_big_file_starts_no_upload(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        file = slack.add_file(name="sales.csv", content=b"a,b\n1,2\n", size=STREAM_MIN_BYTES + PART_BYTES)
        file["url_private_download"] = file["permalink"]  # a web page, as a missing files:read scope gets
        ts = await share(slack, file)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1, timeout=30)
    assert "Slack 로그인 페이지를 받았습니다" in answer_texts(slack, "C1", ts)[0]
    assert oai.uploads == {} and user_uploads(oai) == [], "nothing was sent to OpenAI"


@pytest.mark.parametrize(
    "where",
    [pytest.param("head", id="cp949-from-the-first-row"), pytest.param("late", id="cp949-after-megabytes-of-utf8")],
)
async def test_a_big_cp949_file_is_converted_to_utf8(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, where: str
) -> None:
    ascii_rows = "".join(f"{i},fast delivery and good quality\n" for i in range(700_000))
    korean_rows = "".join(f"{i},배송이 빠르고 품질이 좋아요\n" for i in range(500))
    text = "번호,리뷰\n" + korean_rows + ascii_rows if where == "head" else "id,review\n" + ascii_rows + korean_rows
    data = text.encode("cp949")
    assert len(data) >= STREAM_MIN_BYTES
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, slack.add_file(name="export.csv", content=data))
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1, timeout=60)
    assert answer_texts(slack, "C1", ts)[0].startswith("Echo:")
    assert container_contents(oai) == {"/mnt/data/export.csv": text.encode()}, "converted, whole"
    assert "original encoding cp949" in str(oai.requests_to("POST", "/v1/responses")[0].json["input"])
    if where == "head":
        assert oai.uploads == {}, "known before anything was sent: converted from a spooled copy"
    else:
        assert [u["status"] for u in upload_records(oai)] == ["cancelled"], "the UTF-8 upload is given up"
    assert len(user_uploads(oai)) == 1, "the converted copy goes up whole"


async def test_an_endpoint_without_the_uploads_api_gets_big_files_whole(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    """An OpenAI-compatible gateway may lack /v1/uploads: the file goes up whole instead, and the next big
    file does not try the Uploads API again."""
    oai.uploads_api = False
    first = big_csv(STREAM_MIN_BYTES + PART_BYTES).encode()
    second = first.replace(b"VIP customer", b"new customer")
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, slack.add_file(name="sales.csv", content=first))
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1, timeout=60)
        await slack.user_posts(channel="C1", text="이것도 봐줘", thread_ts=ts, files=[
            slack.add_file(name="more.csv", content=second)])  # fmt: skip
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2, timeout=60)
    assert all(t.startswith("Echo:") for t in answer_texts(slack, "C1", ts))
    assert len(oai.requests_to("POST", "/v1/uploads")) == 1, "tried once, then no more"
    assert oai.uploads == {}
    assert len(user_uploads(oai)) == 2, "each file went up whole"
    assert container_contents(oai) == {"/mnt/data/sales.csv": first, "/mnt/data/more.csv": second}


async def test_stopping_the_turn_mid_upload_cancels_the_upload(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    data = big_csv(STREAM_MIN_BYTES + 4 * PART_BYTES).encode()
    oai.hold_parts = asyncio.Event()
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, slack.add_file(name="sales.csv", content=data))
        await oai.wait_for(lambda: len(part_requests(oai)) == PARTS_IN_FLIGHT, timeout_s=30)
        await slack.user_posts(channel="C1", text="중지", thread_ts=ts)
        await oai.wait_for(lambda: [u["status"] for u in upload_records(oai)] == ["cancelled"], timeout_s=30)
        await slack.wait_for(lambda: any("중지했습니다" in t for t in answer_texts(slack, "C1", ts)), timeout=30)
    oai.hold_parts.set()
    assert_cancelled_and_nothing_used(oai)
    assert not oai.requests_to("POST", "/v1/responses"), "no question was asked about half a file"
