"""Charts that read in Korean: the Hangul font in every container, and native Slack charts."""

from __future__ import annotations

import json

from bot.turn.chart_font import FONT_FAMILY, FONT_FILENAME, font_bytes
from tests.conftest import RunningBot, bot_replies, run_bot, user_file_ids, user_uploads
from tests.fakes.openai_fake import FakeOpenAI, FunctionCall, GeneratedFile, Script
from tests.fakes.slack import FakeSlack

SALES_CSV = "월,매출\n1월,120\n2월,135\n3월,150\n".encode()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def font_uploads(oai: FakeOpenAI) -> list:
    return [r for r in oai.requests_to("POST", "/v1/files") if r.form and r.form["file"]["filename"] == FONT_FILENAME]


def input_text(body: dict) -> str:
    return "\n".join(part["text"] for item in body["input"] if item.get("role") == "user" for part in item["content"])


async def ask_with_csv(slack: FakeSlack, text: str = "<@UBOT> 월별 매출 추이를 그려줘") -> str:
    csv_file = slack.add_file(name="sales.csv", content=SALES_CSV)
    return str((await slack.user_posts(channel="C1", text=text, files=[csv_file]))["ts"])


async def answered(slack: FakeSlack, running: RunningBot, count: int) -> None:
    await slack.wait_for(lambda: len(slack.calls_to("chat.stopStream")) >= count)
    await slack.wait_delivered()
    assert await running.bot.scheduler.wait_idle(10)


async def test_a_new_container_gets_the_font_and_the_model_is_told_how_to_use_it(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts.append(
        Script(text="그렸습니다.", code="plt.savefig('/mnt/data/sales.png')", files=[GeneratedFile("sales.png", PNG)])
    )
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, 1)

    (font_upload,) = font_uploads(oai)
    assert font_upload.form["purpose"] == "user_data"
    font_id = next(i for i, f in oai.files.items() if f["object"]["filename"] == FONT_FILENAME)
    assert oai.files[font_id]["content"] == font_bytes()
    (create,) = oai.requests_to("POST", "/v1/containers")
    assert font_id in create.json["file_ids"]
    assert len(user_file_ids(oai, create.json["file_ids"])) == 1

    body = oai.requests_to("POST", "/v1/responses")[0].json
    text = input_text(body)
    font_path = next(
        f["object"]["path"]
        for f in oai.containers[body["tools"][0]["container"]]["files"].values()
        if f["object"]["path"].endswith(FONT_FILENAME)
    )
    assert f"font_manager.fontManager.addfont('{font_path}')" in text
    assert f"plt.rcParams['font.family'] = '{FONT_FAMILY}'" in text
    file_list = text.split("\n\n")[0]
    assert "sales.csv" in file_list and FONT_FILENAME not in file_list, "the font is not a data file"

    posted = [f["name"] for m in bot_replies(slack, "C1", ts) for f in m.files]
    assert posted == ["sales.png"], "the font is never posted back as an output"


async def test_the_font_is_uploaded_once_and_again_when_openai_lost_it(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        await ask_with_csv(slack)
        await answered(slack, running, 1)
        await ask_with_csv(slack, "<@UBOT> 다른 스레드에서 또 분석해줘")
        await answered(slack, running, 2)
        assert len(font_uploads(oai)) == 1, "two threads, two containers, one upload"
        creates = oai.requests_to("POST", "/v1/containers")
        assert len(creates) == 2
        first_font = creates[0].json["file_ids"][-1]
        assert creates[1].json["file_ids"][-1] == first_font
        assert oai.requests_to("GET", f"/v1/files/{first_font}"), "checked before reuse"

        del oai.files[first_font]  # OpenAI no longer has it (GET answers 404)
        await ask_with_csv(slack, "<@UBOT> 세 번째 스레드")
        await answered(slack, running, 3)

    assert len(font_uploads(oai)) == 2
    new_font = oai.requests_to("POST", "/v1/containers")[-1].json["file_ids"][-1]
    assert new_font != first_font and oai.files[new_font]["object"]["filename"] == FONT_FILENAME
    assert len(user_uploads(oai)) == 3


async def test_the_font_survives_a_restart_through_the_database(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        await ask_with_csv(slack)
        await answered(slack, running, 1)
    async with run_bot(slack, oai, sqlite_url) as running:
        await ask_with_csv(slack, "<@UBOT> 재시작 후 새 스레드")
        await answered(slack, running, 2)
    assert len(font_uploads(oai)) == 1


CHART_ARGS = {
    "charts": [
        {
            "type": "line",
            "title": "월별 매출",
            "categories": ["1월", "2월", "3월"],
            "series": [{"name": "매출", "values": [120, 135, 150]}],
            "y_label": "만원",
        }
    ]
}


def function_outputs(oai: FakeOpenAI) -> list[dict]:
    return [
        json.loads(item["output"])
        for r in oai.requests_to("POST", "/v1/responses")
        for item in r.json["input"]
        if item.get("type") == "function_call_output"
    ]


async def test_a_chart_call_posts_a_native_chart_and_the_answer_continues(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts += [
        Script(
            text="",
            code="df = pd.read_csv('/mnt/data/sales.csv')",
            function_calls=[FunctionCall("slack_chart", json.dumps(CHART_ARGS, ensure_ascii=False))],
        ),
        Script(text="3월 매출이 가장 높습니다."),
    ]
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, 1)

    first, second = (r.json for r in oai.requests_to("POST", "/v1/responses"))
    assert {"type": "function", "name": "slack_chart"}.items() <= first["tools"][-1].items()
    assert second["conversation"] == first["conversation"]
    assert [item["type"] for item in second["input"]] == ["function_call_output"]
    assert function_outputs(oai)[0]["ok"] is True

    charts = [m for m in bot_replies(slack, "C1", ts) if any(b["type"] == "data_visualization" for b in m.blocks)]
    assert len(charts) == 1
    (block,) = charts[0].blocks
    assert block["title"] == "월별 매출"
    assert block["chart"]["axis_config"]["categories"] == ["1월", "2월", "3월"]
    assert block["chart"]["series"] == [
        {
            "name": "매출",
            "data": [{"label": "1월", "value": 120}, {"label": "2월", "value": 135}, {"label": "3월", "value": 150}],
        }
    ]
    assert "| 1월 | 120 |" in charts[0].text, "the text fallback carries the data"
    answer = [m for m in bot_replies(slack, "C1", ts) if "3월 매출이" in m.text]
    assert answer and answer[0].ts > charts[0].ts, "the answer continues under the chart"


async def test_an_over_limit_chart_is_refused_to_the_model_and_not_posted(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    too_many = {
        "charts": [
            {
                "type": "bar",
                "title": "지역별",
                "categories": [f"지역{i}" for i in range(21)],
                "series": [{"name": "매출", "values": list(range(21))}],
            }
        ]
    }
    oai.scripts += [
        Script(text="", function_calls=[FunctionCall("slack_chart", json.dumps(too_many, ensure_ascii=False))]),
        Script(
            text="PNG로 그렸습니다.",
            code="plt.savefig('/mnt/data/regions.png')",
            files=[GeneratedFile("regions.png", PNG)],
        ),
    ]
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, 1)

    (output,) = function_outputs(oai)
    assert output["ok"] is False and "21 categories" in output["error"] and "PNG" in output["next"]
    assert not [m for m in bot_replies(slack, "C1", ts) if any(b["type"] == "data_visualization" for b in m.blocks)]
    assert not [c for c in slack.calls_to("chat.postMessage") if "blocks" in c.params]
    assert [f["name"] for m in bot_replies(slack, "C1", ts) for f in m.files] == ["regions.png"]


async def test_slack_refusing_the_chart_posts_its_data_as_a_table(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    slack.charts_enabled = False
    oai.scripts += [
        Script(text="", function_calls=[FunctionCall("slack_chart", json.dumps(CHART_ARGS, ensure_ascii=False))]),
        Script(text="표로 보여드렸습니다."),
    ]
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, 1)

    refused = [c for c in slack.calls_to("chat.postMessage") if "blocks" in c.params]
    assert len(refused) == 1
    (output,) = function_outputs(oai)
    assert output["ok"] is False and output["posted"] == "table" and "invalid_blocks" in output["error"]
    texts = [m.text for m in bot_replies(slack, "C1", ts)]
    assert any("| 3월 | 150 |" in t and "월별 매출" in t for t in texts)
    assert any("표로 보여드렸습니다." in t for t in texts)


async def test_a_chart_slack_fails_to_post_is_still_answered_to_the_model(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts += [
        Script(text="", function_calls=[FunctionCall("slack_chart", json.dumps(CHART_ARGS, ensure_ascii=False))]),
        Script(text="차트 대신 설명드립니다."),
    ]
    slack.fail_next("chat.postMessage", error="internal_error")
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, 1)
        await slack.user_posts(channel="C1", text="고마워, 하나 더", thread_ts=ts)
        await answered(slack, running, 2)

    (output,) = function_outputs(oai)
    assert output["ok"] is False and "internal_error" in output["error"] and "PNG" in output["next"]
    assert len(oai.requests_to("POST", "/v1/responses")) == 3, "the next turn is not refused for a dangling call"
