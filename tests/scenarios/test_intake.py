"""CSV intake over the wire: every file reaches code interpreter intact, or gets a clear answer in the thread."""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from bot.turn.chart_font import FONT_FILENAME
from tests.conftest import answer_texts, run_bot, user_file_ids, user_uploads
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

REVIEWS = '리뷰ID,평점,내용\n1,5,배송이 빠르고 품질이 좋아요\n2,1,"포장이 엉망, 다시는 안 삽니다"\n3,4,가격 대비 만족\n'
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(200))


def xlsx_bytes() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["월", "매출"])
    sheet.append(["1월", 100])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# The deployment's chart font, in every container beside the users' files.
FONT_PATH = f"/mnt/data/{FONT_FILENAME}"


def intake_temp_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("bot-intake-*"))


def uploaded_contents(oai: FakeOpenAI) -> dict[str, bytes]:
    """What OpenAI received of the users' files, by filename."""
    return {
        rec["object"]["filename"]: rec["content"] for file_id, rec in oai.files.items() if user_file_ids(oai, [file_id])
    }


def turn_input(oai: FakeOpenAI, index: int = 0) -> str:
    return str(oai.requests_to("POST", "/v1/responses")[index].json["input"][0]["content"][0]["text"])


async def share(slack: FakeSlack, files: list[dict[str, Any]], text: str = "<@UBOT> 분석해줘") -> str:
    return str((await slack.user_posts(channel="C1", text=text, files=files))["ts"])


@pytest.mark.parametrize(
    ("name", "data", "filetype", "encoding_note"),
    [
        pytest.param("reviews.csv", REVIEWS.encode("cp949"), "csv", "original encoding cp949", id="excel-cp949"),
        pytest.param("reviews.csv", codecs.BOM_UTF8 + REVIEWS.encode(), "csv", "UTF-8", id="utf8-bom"),
        pytest.param("reviews.csv", REVIEWS.encode("utf-16"), "csv", "original encoding utf-16", id="utf16"),
        pytest.param("reviews.tsv", REVIEWS.replace(",", "\t").encode(), "tsv", "delimiter '\\t'", id="tsv"),
    ],
)
async def test_text_files_reach_openai_as_identical_utf8(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, name: str, data: bytes, filetype: str, encoding_note: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, [slack.add_file(name=name, content=data, filetype=filetype)])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    expected = REVIEWS if filetype == "csv" else REVIEWS.replace(",", "\t")
    assert uploaded_contents(oai)[name].decode("utf-8") == expected, "only the encoding may change"
    text = turn_input(oai)
    assert encoding_note in text
    assert "3 data rows" in text and "리뷰ID" in text


async def test_xlsx_and_json_are_passed_through_unchanged(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    xlsx = xlsx_bytes()
    data = json.dumps([{"월": "1월", "매출": 100}], ensure_ascii=False).encode()
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(
            slack,
            [
                slack.add_file(name="sales.xlsx", content=xlsx, filetype="xlsx", mimetype="application/vnd.ms-excel"),
                slack.add_file(name="sales.json", content=data, filetype="json", mimetype="application/json"),
            ],
        )
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    contents = uploaded_contents(oai)
    assert contents["sales.xlsx"] == xlsx
    assert contents["sales.json"] == data
    assert "sales.xlsx" in turn_input(oai) and "sales.json" in turn_input(oai)
    assert "1 sheet: 'Sheet' (1 data rows; 2 columns: 월, 매출)" in turn_input(oai), "the model gets each sheet"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(lambda s: s.add_file(name="empty.csv", content=b""), "비어 있습니다", id="empty"),
        pytest.param(lambda s: s.add_file(name="photo.csv", content=PNG), "분석할 수 없습니다", id="png-named-csv"),
        pytest.param(
            lambda s: s.add_file(name="report.pdf", content=b"%PDF-1.4", filetype="pdf", mimetype="application/pdf"),
            "CSV, TSV, XLSX, JSON",
            id="unsupported-format",
        ),
        pytest.param(
            lambda s: s.add_file(name="broken.xlsx", content=b"PK\x03\x04" + bytes(300), filetype="xlsx"),
            "분석할 수 없습니다",
            id="broken-xlsx",
        ),
        pytest.param(
            lambda s: s.add_file(name="Budget", content=b"", is_external=True, external_type="gdrive"),
            "Google Drive",
            id="google-drive",
        ),
        pytest.param(
            lambda s: s.add_file(name="old.csv", content=b"a\n1\n", mode="hidden_by_limit"),
            "열 수 없습니다",
            id="hidden-by-plan",
        ),
        pytest.param(
            lambda s: s.add_file(name="big.csv", content=b"a\n1\n", size=600 * 1024 * 1024),
            "너무 큽니다",
            id="declared-too-large",
        ),
    ],
)
async def test_refused_files_get_their_own_message_and_the_question_is_answered(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, make: Any, expected: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        good = slack.add_file(name="good.csv", content=b"a,b\n1,2\n")
        ts = await share(slack, [make(slack), good])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    notice, answer = answer_texts(slack, "C1", ts)
    assert expected in notice
    assert answer.startswith("Echo:")
    assert list(uploaded_contents(oai)) == ["good.csv"], "a refused file is never uploaded"


async def test_file_larger_than_declared_is_cut_off_and_reported(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    temp_before = intake_temp_dirs()
    async with run_bot(slack, oai, sqlite_url):
        lying = slack.add_file(name="grown.csv", content=b"a,b\n" + b"1,2\n" * 1000, size=100)
        ts = await share(slack, [lying])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert "`grown.csv`" in answer_texts(slack, "C1", ts)[0]
    assert not oai.files, "never upload half a file"
    assert intake_temp_dirs() <= temp_before, "temporary files removed"


async def test_stub_file_entries_are_resolved_with_files_info(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        stub = slack.add_file(name="connect.csv", content=REVIEWS.encode(), stub=True)
        ts = await share(slack, [stub])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert [c.params["file"] for c in slack.calls_to("files.info")] == [stub["id"]]
    assert uploaded_contents(oai)["connect.csv"].decode() == REVIEWS


async def test_same_file_shared_again_is_not_uploaded_twice(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url):
        first = slack.add_file(name="reviews.csv", content=REVIEWS.encode())
        ts = await share(slack, [first])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        again = slack.add_file(name="reviews (1).csv", content=REVIEWS.encode())  # new Slack id, same bytes
        await slack.user_posts(channel="C1", text="다시 올렸어요", thread_ts=ts, files=[again, first])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    assert len(user_uploads(oai)) == 1
    assert len(oai.requests_to("POST", "/v1/containers")) == 1
    assert not oai.requests_to("POST", "/v1/containers/"), "nothing new to add to the container"


async def test_file_shared_in_the_thread_later_joins_the_container(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, [slack.add_file(name="sales.csv", content=b"m,v\n1,2\n")])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        costs = slack.add_file(name="costs.csv", content=b"m,c\n1,3\n")
        await slack.user_posts(channel="C1", text="비용 파일도 같이 봐줘", thread_ts=ts, files=[costs])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    container_id = next(iter(oai.containers))
    added = oai.requests_to("POST", f"/v1/containers/{container_id}/files")
    assert len(added) == 1 and added[0].json["file_id"] in oai.files
    text = turn_input(oai, 1)
    assert "costs.csv (new this turn)" in text and "sales.csv" in text


async def test_thread_file_limit(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url, env={"MAX_FILES_PER_THREAD": "1"}):
        files = [slack.add_file(name=f"f{i}.csv", content=f"a\n{i}\n".encode()) for i in range(2)]
        ts = await share(slack, files)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    assert "f1.csv" in answer_texts(slack, "C1", ts)[0] and "한도" in answer_texts(slack, "C1", ts)[0]
    assert list(uploaded_contents(oai)) == ["f0.csv"]


async def test_files_shared_in_the_thread_before_the_mention_are_taken(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        root = await slack.user_posts(
            channel="C1", text="1월 매출", files=[slack.add_file(name="jan.csv", content=b"d,v\n1,2\n")]
        )
        await slack.user_posts(
            channel="C1",
            text="2월 것도",
            thread_ts=root["ts"],
            files=[slack.add_file(name="feb.csv", content=b"d,v\n3,4\n")],
        )
        await slack.user_posts(channel="C1", text="<@UBOT> 두 달 비교해줘", thread_ts=root["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", root["ts"])) == 1)
    assert sorted(uploaded_contents(oai)) == ["feb.csv", "jan.csv"]
    text = turn_input(oai)
    assert text.index("jan.csv") < text.index("feb.csv"), "root first"


async def test_file_that_outgrows_the_limit_when_converted_is_refused_as_too_large(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    # ~0.9 MB in CP949, ~1.4 MB as UTF-8
    korean = ("이름,메모\n" + "홍길동,가나다라마바사아자차카타파하\n" * 25_000).encode("cp949")
    assert len(korean) < 1_048_576 < len(korean.decode("cp949").encode())
    async with run_bot(slack, oai, sqlite_url, env={"FILE_SIZE_LIMIT_MB": "1"}):
        ts = await share(slack, [slack.add_file(name="memo.csv", content=korean)])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert "너무 큽니다" in answer_texts(slack, "C1", ts)[0]
    assert not oai.files


async def test_cp949_rows_after_megabytes_of_ascii_reach_openai_as_utf8_korean(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    text = (
        "id,review\n"
        + "".join(f"{i},fast delivery and good quality\n" for i in range(100_000))
        + "".join(f"{i},배송이 빠르고 품질이 좋아요\n" for i in range(500))
    )
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, [slack.add_file(name="export.csv", content=text.encode("cp949"))], text="<@UBOT> look")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert uploaded_contents(oai)["export.csv"].decode("utf-8") == text
    assert "original encoding cp949" in turn_input(oai)
    assert answer_texts(slack, "C1", ts)[0].startswith("Echo:"), "answered, not refused"


def turn_outcomes(sqlite_url: str) -> list[tuple[str, str | None]]:
    """(status, outcome) of every finished turn, oldest first (read straight from the database file)."""
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
        rows = db.execute("SELECT status, outcome FROM turns WHERE status IN ('done', 'failed') ORDER BY id").fetchall()
    return [(str(r[0]), r[1]) for r in rows]


@pytest.mark.parametrize(
    "where",
    [pytest.param("on-the-mention", id="files-of-the-turn"), pytest.param("earlier", id="earlier-files-in-thread")],
)
async def test_when_no_file_can_be_read_the_notice_is_the_whole_reply(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, where: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        png = slack.add_file(name="photo.csv", content=PNG)
        pdf = slack.add_file(name="report.pdf", content=b"%PDF-1.4", filetype="pdf", mimetype="application/pdf")
        if where == "earlier":
            root = await slack.user_posts(channel="C1", text="자료", files=[png, pdf])
            ts = str(root["ts"])
            await slack.user_posts(channel="C1", text="<@UBOT> 분석해줘", thread_ts=ts)
        else:
            ts = await share(slack, [png, pdf])
        await slack.wait_for(lambda: bool(turn_outcomes(sqlite_url)))
    assert turn_outcomes(sqlite_url) == [("done", "no_readable_file")]
    assert slack.status("C1", ts) == "", "no status left showing (the notices cleared it)"
    assert slack.status_history[-1] == ("C1", ts, ""), "the last status seen is none"
    notices = answer_texts(slack, "C1", ts)
    assert "photo.csv" in notices[0] and "report.pdf" in notices[1]
    for path in ("/v1/conversations", "/v1/containers", "/v1/responses", "/v1/files"):
        assert not oai.requests_to("POST", path), f"nothing spent: {path}"


async def test_an_unreadable_file_in_a_thread_with_a_readable_one_is_still_answered(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, [slack.add_file(name="good.csv", content=b"a,b\n1,2\n")])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        await slack.user_posts(
            channel="C1", text="이것도", thread_ts=ts, files=[slack.add_file(name="photo.csv", content=PNG)]
        )
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 3)
    assert len(oai.requests_to("POST", "/v1/responses")) == 2


async def test_a_question_without_files_still_goes_to_the_model(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, [], text="<@UBOT> 안녕")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert len(oai.requests_to("POST", "/v1/responses")) == 1


async def test_two_files_of_the_same_name_reach_the_container_under_distinct_paths(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, [slack.add_file(name="data.csv", content=b"month,sales\n1,10\n", user="U1")])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        other = slack.add_file(name="data.csv", content=b"month,costs\n1,7\n2,8\n", user="U2")
        await slack.user_posts(channel="C1", user="U2", text="비용 data.csv 도", thread_ts=ts, files=[other])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    container = next(iter(oai.containers.values()))
    in_container = {
        f["object"]["path"]: f["content"] for f in container["files"].values() if f["object"]["path"] != FONT_PATH
    }
    assert in_container == {
        "/mnt/data/data.csv": b"month,sales\n1,10\n",
        "/mnt/data/data (2).csv": b"month,costs\n1,7\n2,8\n",
    }
    lines = {line.split(":", 1)[0]: line for line in turn_input(oai, 1).splitlines() if line.startswith("- ")}
    first, second = lines["- /mnt/data/data.csv"], lines["- /mnt/data/data (2).csv (new this turn)"]
    assert "`data.csv` by <@U1>" in first and "month, sales" in first
    assert "`data.csv` by <@U2>" in second and "renamed" in second and "month, costs" in second


async def test_a_file_recorded_but_never_added_to_the_container_is_added_next_turn(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await share(slack, [slack.add_file(name="sales.csv", content=b"m,v\n1,2\n")])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        # The add fails once, as a real 5xx the service says not to retry; the turn reports it.
        oai.fail_next(
            "/v1/containers/",
            method="POST",
            status=500,
            code="server_error",
            message="The server had an error while processing your request.",
            headers={"x-should-retry": "false"},
        )
        costs = slack.add_file(name="costs.csv", content=b"m,c\n1,3\n")
        await slack.user_posts(channel="C1", text="비용 파일도 봐줘", thread_ts=ts, files=[costs])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
        assert len(oai.requests_to("POST", "/v1/responses")) == 1, "the failed turn asked nothing"
        await slack.user_posts(channel="C1", text="다시 해줘", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 3)
    container = next(iter(oai.containers.values()))
    paths = sorted(f["object"]["path"] for f in container["files"].values())
    assert paths == sorted(["/mnt/data/costs.csv", "/mnt/data/sales.csv", FONT_PATH])
    assert "/mnt/data/costs.csv" in turn_input(oai, 1)
    listings = [r for r in oai.requests_to("GET", "/v1/containers/") if r.path.endswith("/files")]
    assert len(listings) == 3, "one listing per turn"
