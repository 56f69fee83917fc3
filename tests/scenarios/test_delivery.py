"""Answers arrive whole and in order, survive Slack and OpenAI trouble, and carry feedback and stop controls."""

from __future__ import annotations

import asyncio
import itertools
import re

import pytest

from bot.slack.reply import FEEDBACK_ACTION_ID
from bot.store import Store
from tests.conftest import answer_texts, bot_replies, run_bot
from tests.fakes.openai_fake import FakeOpenAI, GeneratedFile, Script
from tests.fakes.slack import FakeSlack

PNG_A = b"\x89PNG\r\n\x1a\nA" + b"\x00" * 40
PNG_B = b"\x89PNG\r\n\x1a\nB" + b"\x00" * 40
PNG_C = b"\x89PNG\r\n\x1a\nC" + b"\x00" * 40


async def ask(slack: FakeSlack, text: str = "<@UBOT> 분석해줘") -> str:
    """Ask with a small CSV: code runs only in a thread that holds a file (it has a container then)."""
    data = slack.add_file(name="data.csv", content=b"month,sales\n1,100\n2,120\n")
    return str((await slack.user_posts(channel="C1", text=text, files=[data]))["ts"])


def long_answer(paragraphs: int = 120) -> str:
    parts = [f"## 섹션 {i}\n\n문단 {i}: " + "매출과 리뷰를 비교한 결과입니다. " * 12 for i in range(paragraphs)]
    parts.insert(10, "| 월 | 매출 |\n|---|---|\n" + "\n".join(f"| {m}월 | {m * 100} |" for m in range(1, 13)))
    parts.insert(20, "```python\n" + "\n".join(f"print({i})" for i in range(40)) + "\n```")
    return "\n\n".join(parts)


async def test_a_30000_character_answer_arrives_whole_and_in_order(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    text = long_answer()
    assert len(text) > 30_000
    oai.scripts.append(Script(text=text))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await slack.wait_for(lambda: slack.calls_to("chat.stopStream") != [] and slack.status("C1", ts) == "")
        await slack.wait_for(lambda: len("".join(answer_texts(slack, "C1", ts))) >= len(text) - 50)
    shown = answer_texts(slack, "C1", ts)
    assert len(shown) >= 3, "split over several messages"
    assert all(len(m) <= 12_000 for m in shown)
    joined = "\n\n".join(shown)
    positions = [joined.find(f"문단 {i}: ") for i in range(120)]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), "every paragraph, in order"
    for message in shown:
        assert message.count("```") % 2 == 0, "a code block is never left open"
    table = next(m for m in shown if "| 월 | 매출 |" in m)
    assert "| 12월 | 1200 |" in table, "the table stays in one message"
    for call in slack.calls_to("chat.appendStream") + slack.calls_to("chat.startStream"):
        assert len(call.params.get("markdown_text", "")) <= 12_000


async def test_a_3200_character_answer_costs_at_most_8_slack_calls(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    """Slack rate-limits appendStream and setStatus: one status (the phase never changes: reasoning is
    "analyzing" too), the first text at once, then one write per 600 characters, the rest on the stop."""
    text = "".join(f"{i:03d}. 지역별 매출이 고르게 늘었습니다 (revenue grew evenly).\n" for i in range(70))[:3_200]
    oai.scripts.append(Script(text=text, reasoning=True))
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = str((await slack.user_posts(channel="C1", text="<@UBOT> 요약해줘"))["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        assert await running.bot.scheduler.wait_idle(10), "the turn is over, not only its last message"
    assert answer_texts(slack, "C1", ts) == [text]
    turn_calls = [c.method for c in slack.calls if c.method not in ("auth.test", "apps.connections.open")]
    assert turn_calls.count("assistant.threads.setStatus") == 1, turn_calls
    assert turn_calls.count("chat.appendStream") <= (len(text) - 1) // 600, turn_calls
    assert len(turn_calls) <= 8, turn_calls
    stop = slack.calls_to("chat.stopStream")[0].params
    assert stop.get("markdown_text") and stop.get("blocks"), "the last text beside the feedback buttons"
    assert slack.status("C1", ts) == ""


async def test_progress_is_shown_while_python_runs_and_cleared_at_the_end(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts.append(Script(text="done", code="df.describe()\nplt.savefig('/mnt/data/a.png')", reasoning=True))
    async with run_bot(slack, oai, sqlite_url):
        csv_file = slack.add_file(name="reviews.csv", content=b"a,b\n1,2\n")
        ts = str((await slack.user_posts(channel="C1", text="<@UBOT> describe", files=[csv_file]))["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1 and slack.status("C1", ts) == "")
    statuses = [status for channel, thread, status in slack.status_history if thread == ts and status]
    assert statuses[0] == "is analyzing…"
    assert "is reading reviews.csv…" in statuses
    assert "is running Python…" in statuses
    assert statuses.index("is running Python…") < statuses.index("is drawing a chart…")
    assert slack.status("C1", ts) == ""
    sent = [c.params["status"] for c in slack.calls_to("assistant.threads.setStatus") if c.params["thread_ts"] == ts]
    assert all(a != b for a, b in itertools.pairwise(sent)), f"a call only when it changes: {sent}"


async def test_generated_files_are_uploaded_once_in_order_and_links_replaced(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts.append(
        Script(
            text="월별 매출 차트와 요약표입니다.",
            code="plt.savefig('/mnt/data/revenue.png')",
            files=[
                GeneratedFile("revenue.png", PNG_A, label="월별 매출 차트"),
                GeneratedFile("summary.csv", b"m,v\n1,2\n"),
                GeneratedFile("uncited.png", PNG_B, cite=False),
            ],
            image_outputs=[PNG_C],
        )
    )
    async with run_bot(slack, oai, sqlite_url):
        csv_file = slack.add_file(name="sales.csv", content=b"m,v\n1,2\n")
        ts = str((await slack.user_posts(channel="C1", text="<@UBOT> 차트", files=[csv_file]))["ts"])
        await slack.wait_for(lambda: slack.status("C1", ts) == "" and len(slack.calls_to("chat.stopStream")) == 1)
        await slack.user_posts(channel="C1", text="요약표를 다시 설명해줘", thread_ts=ts)
        await slack.wait_for(lambda: len(slack.calls_to("chat.stopStream")) == 2)
    names = [f["name"] for m in bot_replies(slack, "C1", ts) for f in m.files]
    assert names[:2] == ["revenue.png", "summary.csv"], "cited files first, in the order of the answer"
    # The run saved revenue.png and also displayed it (PNG_C, another dpi): posted once, as the saved file.
    assert sorted(names) == sorted(["revenue.png", "summary.csv", "uncited.png"])
    assert "sales.csv" not in names, "the user's own file is never echoed back"
    assert len(names) == len(set(names)), "each file once, also after a later turn"
    answer = answer_texts(slack, "C1", ts)[0]
    assert "sandbox:" not in answer and "**월별 매출 차트**" in answer
    titles = {f["name"]: f["title"] for m in bot_replies(slack, "C1", ts) for f in m.files}
    assert titles["revenue.png"] == "월별 매출 차트", "titled from the answer's link"
    assert titles["summary.csv"] == "summary.csv"


@pytest.mark.parametrize(
    ("code", "files", "expected"),
    [
        pytest.param(
            "plt.plot(x); plt.savefig('/mnt/data/trend.png'); plt.show()",
            [GeneratedFile("trend.png", PNG_A, cite=False)],
            ["trend.png"],
            id="saved-and-displayed-posted-once-as-the-file",
        ),
        pytest.param("plt.plot(x); plt.show()", [], ["chart-1.png"], id="displayed-only-still-posted"),
        pytest.param(
            "df.to_csv('/mnt/data/out.csv'); plt.show()",
            [GeneratedFile("out.csv", b"a\n1\n", cite=False)],
            ["out.csv", "chart-1.png"],
            id="displayed-chart-and-a-saved-table",
        ),
    ],
)
async def test_a_chart_saved_and_displayed_is_posted_once(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, code: str, files: list[GeneratedFile], expected: list[str]
) -> None:
    oai.scripts.append(Script(text="차트입니다.", code=code, files=files, image_outputs=[PNG_C]))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> 추이 그려줘")
        await slack.wait_for(lambda: slack.status("C1", ts) == "" and len(slack.calls_to("chat.stopStream")) == 1)
    assert [f["name"] for m in bot_replies(slack, "C1", ts) for f in m.files] == expected


async def test_a_file_regenerated_under_the_same_name_is_posted_again(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    old = b"a\n1\n"
    oai.scripts.append(Script(text="v1", code="df.to_csv('/mnt/data/top.csv')", files=[GeneratedFile("top.csv", old)]))
    oai.scripts.append(Script(text="그대로", code="print(len(df))"))
    new = b"a\n1\n2\n3\n"
    oai.scripts.append(Script(text="v2", code="df.to_csv('/mnt/data/top.csv')", files=[GeneratedFile("top.csv", new)]))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> 상위 목록")
        await slack.wait_for(lambda: len(slack.calls_to("chat.stopStream")) == 1 and slack.status("C1", ts) == "")
        for turn, text in enumerate(["행 수는?", "세 줄로 다시 만들어줘"], start=2):
            await slack.user_posts(channel="C1", text=text, thread_ts=ts)
            await slack.wait_for(
                lambda turn=turn: len(slack.calls_to("chat.stopStream")) == turn and slack.status("C1", ts) == ""
            )
    container = next(iter(oai.containers.values()))
    assert len([f for f in container["files"].values() if f["object"]["source"] == "assistant"]) == 1, "one file"
    posted = [f for m in bot_replies(slack, "C1", ts) for f in m.files]
    assert [f["name"] for f in posted] == ["top.csv", "top.csv"], "the old version once, the new version once"
    assert [f["size"] for f in posted] == [len(old), len(new)]


async def test_feedback_buttons_are_recorded_with_the_response_id(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> rows?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        answer = next(m for m in bot_replies(slack, "C1", ts) if m.text)
        response_id = next(iter(oai.responses))
        await slack.click(
            channel="C1", message_ts=answer.ts, action_id=FEEDBACK_ACTION_ID, value=f"good:{response_id}", user="U2"
        )
        await slack.wait_delivered()
    store = await Store.open(sqlite_url)
    try:
        assert await store.feedback_for(response_id) == [("U2", "good")]
    finally:
        await store.close()
    labels = str(answer.blocks)
    assert "Helpful" in labels and "Not helpful" in labels


async def test_stop_reply_cancels_the_running_analysis(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="아주 긴 분석을 시작합니다 " * 3, hold=hold))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await slack.wait_for(lambda: oai.active_streams == 1 and any(m.text for m in bot_replies(slack, "C1", ts)))
        await slack.user_posts(channel="C1", text="중지", thread_ts=ts)
        await slack.wait_for(lambda: any("중지했습니다" in t for t in answer_texts(slack, "C1", ts)))
        await oai.wait_for(lambda: oai.active_streams == 0)
        await slack.user_posts(channel="C1", text="그럼 평균만 알려줘", thread_ts=ts)
        await slack.wait_for(lambda: any(t.startswith("Echo:") for t in answer_texts(slack, "C1", ts)))
    hold.set()
    assert len(oai.requests_to("POST", "/v1/responses")) == 2, "the stop message itself is not a question"
    assert "아주 긴 분석" in answer_texts(slack, "C1", ts)[0], "what was shown stays"


@pytest.mark.parametrize(
    ("stop_text", "reply"),
    [
        pytest.param("<@UBOT> stop", "Nothing is running in this thread right now.", id="english-mention"),
        pytest.param("중지", "지금 이 스레드에서 진행 중인 분석이 없습니다.", id="korean"),
    ],
)
async def test_stop_with_nothing_running_says_so_once(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, stop_text: str, reply: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask(slack, "<@UBOT> 분석해줘")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        assert await running.bot.scheduler.wait_idle(10), "the turn is over, not only its last message"
        await slack.user_posts(channel="C1", text=stop_text, thread_ts=ts)
        await slack.wait_for(lambda: reply in answer_texts(slack, "C1", ts))
        await slack.wait_delivered()  # both deliveries of a mention were handled
    # The bot has stopped: any notice still in flight was posted before it exited.
    assert answer_texts(slack, "C1", ts).count(reply) == 1, "a mention arrives twice but is answered once"
    assert len(oai.requests_to("POST", "/v1/responses")) == 1, "the stop message itself is not a question"


async def test_stop_in_a_thread_without_a_session_is_ignored(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        top = await slack.user_posts(channel="C1", text="team chat, not for the bot")
        await slack.user_posts(channel="C1", text="stop", thread_ts=top["ts"])
        await slack.wait_delivered()  # acknowledged: the bot has decided what to do with it
    assert not bot_replies(slack, "C1", top["ts"])
    assert not slack.calls_to("chat.postMessage")


async def test_stream_closed_by_slack_loses_and_repeats_nothing(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    slack.stream_ttl_s = 0.4
    text = " ".join(f"word{i}" for i in range(300))
    oai.scripts.append(Script(text=text, delay_s=0.01))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> long")
        await slack.wait_for(lambda: slack.status("C1", ts) == "" and len(oai.requests_to("POST", "/v1/responses")))
        await slack.wait_for(lambda: "word299" in " ".join(m.text for m in bot_replies(slack, "C1", ts)))
    shown = " ".join(m.text for m in bot_replies(slack, "C1", ts))
    words = re.findall(r"word\d+", shown)
    assert words == [f"word{i}" for i in range(300)], "every word once, in order"
    assert slack.calls_to("chat.update"), "the stream did expire mid-answer (else this test shows nothing)"


@pytest.mark.parametrize(
    ("script", "question", "says"),
    [
        pytest.param(
            Script(text="The first half of the analysis", status="incomplete"),
            "<@UBOT> everything please",
            ["reached the length limit", "continue"],
            id="length",
        ),
        pytest.param(
            Script(text="The first half of the analysis", status="incomplete", incomplete_reason="content_filter"),
            "<@UBOT> everything please",
            ["content filter", "rephrase"],
            id="content-filter",
        ),
        pytest.param(
            Script(text="The first half of the analysis", code=[f"step_{i}()" for i in range(20)]),
            "<@UBOT> everything please",
            ["limit of 12 code runs", "continue"],
            id="code-run-cap",
        ),
        pytest.param(
            Script(text="The first half of the analysis", code=[f"step_{i}()" for i in range(20)]),
            "<@UBOT> 전부 분석해줘",
            ["코드 실행 한도(12회)", "계속"],
            id="code-run-cap-korean",
        ),
        pytest.param(
            Script(text="The first half of the analysis", status="incomplete"),
            "<@UBOT> 전부 분석해줘",
            ["길이 제한", "계속"],
            id="length-korean",
        ),
    ],
)
async def test_an_answer_cut_short_keeps_the_text_and_names_the_reason(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, script: Script, question: str, says: list[str]
) -> None:
    oai.scripts.append(script)
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, question)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2 and slack.status("C1", ts) == "")
    first, note = answer_texts(slack, "C1", ts)
    assert first.startswith("The first half of the analysis")
    assert all(words in note for words in says), note
    assert "max_output_tokens" not in note and "content_filter" not in note, "our words, not the API's"


async def test_a_complete_answer_with_a_few_code_runs_has_no_note(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts.append(Script(text="All done.", code=["a()", "b()", "c()"]))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> three steps")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1 and slack.status("C1", ts) == "")
        response_id = next(iter(oai.responses))
    assert answer_texts(slack, "C1", ts) == ["All done."]
    kinds = [item["type"] for item in oai.responses[response_id]["output"]]
    assert kinds.count("code_interpreter_call") == 3


async def test_the_code_run_cap_is_sent_and_honoured(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    oai.scripts.append(Script(text="Stopped.", code=[f"step_{i}()" for i in range(20)]))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> go")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    assert oai.requests_to("POST", "/v1/responses")[0].json["max_tool_calls"] == 12
    response = next(iter(oai.responses.values()))
    assert response["status"] == "completed" and response["incomplete_details"] is None, "the API says nothing"
    assert [item["type"] for item in response["output"]].count("code_interpreter_call") == 12


async def test_posted_answer_gets_feedback_buttons_too(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    slack.fail_next("chat.startStream", error="not_allowed_token_type")
    oai.scripts.append(Script(text="## 결과\n\n- 평균 **3.3점**"))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> 평균?")
        await slack.wait_for(lambda: slack.status("C1", ts) == "" and bool(slack.calls_to("chat.update")))
    answer = next(m for m in bot_replies(slack, "C1", ts) if m.blocks)
    assert answer.blocks[0] == {"type": "markdown", "text": "## 결과\n\n- 평균 **3.3점**"}
    assert any(b["type"] == "context_actions" for b in answer.blocks)


async def test_buttons_refused_by_slack_still_end_the_stream(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    slack.fail_next("chat.stopStream", error="invalid_blocks")
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> hi")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    stops = slack.calls_to("chat.stopStream")
    assert len(stops) == 2 and "blocks" in stops[0].params and "blocks" not in stops[1].params
    assert not any(m.streaming for m in bot_replies(slack, "C1", ts))


async def test_container_listing_failures_do_not_spoil_the_answer(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts.append(Script(text="차트입니다", code="plt.plot()", files=[GeneratedFile("c.png", PNG_A)]))
    # Both listings of the container's files fail (paths before the turn, outputs after it).
    oai.fail_next("/v1/containers/cntr", method="GET", status=400, code=None, message="listing unavailable", times=2)
    async with run_bot(slack, oai, sqlite_url):
        csv_file = slack.add_file(name="a.csv", content=b"x,y\n1,2\n")
        ts = str((await slack.user_posts(channel="C1", text="<@UBOT> plot", files=[csv_file]))["ts"])
        await slack.wait_for(lambda: slack.status("C1", ts) == "" and len(slack.calls_to("chat.stopStream")) == 1)
    assert answer_texts(slack, "C1", ts)[0].startswith("차트입니다")
    assert [f["name"] for m in bot_replies(slack, "C1", ts) for f in m.files] == ["c.png"], "the cited chart"
    assert "/mnt/data/a.csv" in oai.requests_to("POST", "/v1/responses")[0].json["input"][0]["content"][0]["text"]
