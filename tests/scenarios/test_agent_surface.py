"""Slack's agent surface: the Stop button, step progress, the waiting notice, the assistant pane and Home."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import answer_texts, bot_replies, run_bot
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack


async def ask(slack: FakeSlack, text: str = "<@UBOT> 분석해줘", *, name: str = "reviews.csv") -> str:
    data = slack.add_file(name=name, content=b"stars,text\n5,good\n1,bad\n")
    return str((await slack.user_posts(channel="C1", text=text, files=[data]))["ts"])


def pane_answers(slack: FakeSlack, thread_ts: str) -> list[str]:
    """The bot's finished replies in an assistant-pane thread (not the pane's own root message)."""
    return [t for t in answer_texts(slack, "D1", thread_ts) if t != "New chat"]


# ---------------------------------------------------------------------------------------------- steps


async def test_each_code_run_is_a_step_in_progress_then_complete(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    codes = [
        "# Load the reviews\ndf = pd.read_csv('/mnt/data/reviews.csv')",
        "df.plot(); plt.savefig('/mnt/data/a.png')",
    ]
    oai.scripts.append(Script(text="평균 별점은 3점입니다.", code=codes))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    answer = next(m for m in bot_replies(slack, "C1", ts) if m.text)
    assert [(s["title"], s["status"]) for s in answer.tasks] == [
        ("Load the reviews", "complete"),
        ("차트 그리기", "complete"),
    ], "one step per code run, titled from its first comment or what it does, completed"
    sent = [
        (c["id"], c["status"])
        for call in slack.calls_to("chat.startStream") + slack.calls_to("chat.appendStream")
        for c in call.params.get("chunks") or []
        if c["type"] == "task_update"
    ]
    first, second = answer.tasks[0]["id"], answer.tasks[1]["id"]
    assert sent == [(first, "in_progress"), (first, "complete"), (second, "in_progress"), (second, "complete")]
    start = slack.calls_to("chat.startStream")[0].params
    assert start["task_display_mode"] == "timeline", "the first step opened the answer's stream"
    assert len(slack.calls_to("chat.startStream")) == 1, "the text follows in the same message"
    assert "평균 별점은 3점입니다." in answer.text


async def test_refused_steps_fall_back_to_the_status_line(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    oai.scripts.append(Script(text="done", code=["df = pd.read_csv('/mnt/data/reviews.csv')", "df.describe()"]))
    slack.fail_next("chat.startStream", error="invalid_chunks")
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> describe it")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1 and slack.status("C1", ts) == "")
    statuses = [status for _channel, thread, status in slack.status_history if thread == ts and status]
    assert "is running Python…" in statuses
    assert all(not m.tasks for m in bot_replies(slack, "C1", ts)), "no step after Slack refused them"
    assert answer_texts(slack, "C1", ts) == ["done"], "the answer itself still streams"
    chunked = [c for c in slack.calls_to("chat.startStream") if c.params.get("chunks")]
    assert len(chunked) == 1, "steps are not tried again in the same turn"


# ---------------------------------------------------------------------------------------------- stop button


async def test_stop_button_ends_the_analysis_like_the_stop_reply(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="아주 긴 분석을 시작합니다 " * 3, hold=hold))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await slack.wait_for(lambda: oai.active_streams == 1 and any(m.text for m in bot_replies(slack, "C1", ts)))
        assert slack.session_statuses[("C1", ts)] == "processing"
        stopped = await slack.press_stop(channel="C1", thread_ts=ts)
        assert len(stopped) == 1, "Slack stopped the answer's stream"
        await oai.wait_for(lambda: oai.active_streams == 0)
        await slack.wait_for(lambda: any("중지했습니다" in t for t in answer_texts(slack, "C1", ts)))
        await slack.wait_for(lambda: slack.session_statuses[("C1", ts)] == "active")
        assert slack.calls_to("agents.sessions.setStatus")[-1].params["status"] == "active"
        await slack.user_posts(channel="C1", text="그럼 평균만 알려줘", thread_ts=ts)
        await slack.wait_for(lambda: any(t.startswith("Echo:") for t in answer_texts(slack, "C1", ts)))
    hold.set()
    assert "아주 긴 분석" in answer_texts(slack, "C1", ts)[0], "what was shown stays"
    assert slack.status("C1", ts) == ""
    assert len(oai.requests_to("POST", "/v1/responses")) == 2, "the thread goes on after the stop"


async def test_stop_button_after_the_answer_is_quiet(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask(slack)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        assert await running.bot.scheduler.wait_idle(10)
        posts = len(slack.calls_to("chat.postMessage"))
        assert await slack.press_stop(channel="C1", thread_ts=ts) == []
        await slack.wait_delivered()
    assert len(slack.calls_to("chat.postMessage")) == posts, "nothing to stop, nothing to say"


# ---------------------------------------------------------------------------------------------- agent pane


@pytest.mark.parametrize(
    ("user", "expected_title"),
    [
        pytest.param("U1", "CSV 올리고 질문하기", id="korean-locale"),
        pytest.param("U2", "Ask about a CSV", id="english-locale"),
    ],
)
async def test_a_new_assistant_thread_gets_prompts_in_the_users_language(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, user: str, expected_title: str
) -> None:
    slack.add_channel("D2", is_im=True, members={"U2"})
    async with run_bot(slack, oai, sqlite_url):
        channel = "D1" if user == "U1" else "D2"
        ts = await slack.open_assistant_thread(user=user, channel=channel)
        await slack.wait_for(lambda: (channel, ts) in slack.suggested_prompts)
    prompts = slack.suggested_prompts[(channel, ts)]
    assert 3 <= len(prompts) <= 4
    assert prompts[0]["title"] == expected_title
    assert all(p["title"] and p["message"] for p in prompts)
    assert slack.calls_to("users.info")[0].params["include_locale"] in (True, "true", "1")


async def test_prompts_in_both_languages_when_the_locale_is_unknown(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    slack.fail_next("users.info", error="missing_scope")
    async with run_bot(slack, oai, sqlite_url):
        ts = await slack.open_assistant_thread()
        await slack.wait_for(lambda: ("D1", ts) in slack.suggested_prompts)
    titles = [p["title"] for p in slack.suggested_prompts[("D1", ts)]]
    assert titles == ["CSV 올리고 질문하기", "차트 그리기", "Ask about a CSV", "Draw a chart"]


async def test_a_question_in_the_pane_is_answered_like_a_dm_and_titles_the_thread(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await slack.open_assistant_thread()
        data = slack.add_file(name="sales.csv", content=b"month,sales\n1,100\n")
        await slack.user_posts(channel="D1", text="월별 매출 추이를 알려줘\n자세히", files=[data], thread_ts=ts)
        await slack.wait_for(lambda: len(pane_answers(slack, ts)) == 1)
        await slack.user_posts(channel="D1", text="그럼 평균은?", thread_ts=ts)
        await slack.wait_for(lambda: len(pane_answers(slack, ts)) == 2)
    assert all(t.startswith("Echo:") for t in pane_answers(slack, ts))
    assert slack.titles[("D1", ts)] == "월별 매출 추이를 알려줘"
    assert len(slack.calls_to("assistant.threads.setTitle")) == 1, "titled from the first question only"


async def test_channel_threads_get_no_title_call(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert slack.calls_to("assistant.threads.setTitle") == []


# ---------------------------------------------------------------------------------------------- home


async def test_home_explains_in_both_languages_and_links_the_viewers_threads(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        first = await ask(slack, "<@UBOT> 리뷰 별점 분석해줘")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", first)) == 1)
        await slack.user_posts(channel="C1", text="평균은?", thread_ts=first)
        second = await ask(slack, "<@UBOT> summarize sales")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", second)) == 1)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", first)) == 2)
        other = await ask(slack, "<@UBOT> someone else's question")  # asked by U1 too, below by U2
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", other)) == 1)
        data = slack.add_file(name="u2.csv", content=b"a\n1\n")
        theirs = str((await slack.user_posts(channel="C1", text="<@UBOT> U2 here", files=[data], user="U2"))["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", theirs)) == 1)
        await slack.open_app_home(user="U1")
        await slack.wait_for(lambda: "U1" in slack.home_views)
    view = slack.home_views["U1"]
    text = str(view["blocks"])
    for words in ("How to use", "사용법", "stop", "중지", "forget", "잊어줘", "mention", "멘션"):
        assert words.lower() in text.lower(), words
    links = [
        line for block in view["blocks"] if block["type"] == "section" for line in block["text"]["text"].split("\n")
    ]
    links = [line for line in links if "/archives/" in line]
    assert [line.split("|", 1)[1] for line in links] == [
        "someone else's question>",
        "summarize sales>",
        "리뷰 별점 분석해줘>",
    ], "newest first, each thread once, titled by its first question; not other people's threads"
    assert f"/archives/C1/p{first.replace('.', '')}" in links[2]


async def test_home_for_a_newcomer_says_there_is_nothing_yet(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        await slack.open_app_home(user="U2")
        await slack.wait_for(lambda: "U2" in slack.home_views)
    text = str(slack.home_views["U2"]["blocks"])
    assert "No analyses yet." in text and "아직 분석한 스레드가 없습니다." in text


# ---------------------------------------------------------------------------------------------- waiting


async def test_a_question_behind_a_running_one_says_it_waits_then_gets_the_normal_status(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="첫 번째 답변입니다 " * 3, hold=hold))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await slack.wait_for(lambda: oai.active_streams == 1)
        await slack.user_posts(channel="C1", text="그리고 평균은?", thread_ts=ts)
        await slack.wait_for(lambda: slack.ephemerals("U1") != [])
        waiting = slack.ephemerals("U1")[0]
        assert waiting.thread_ts == ts and "1개" in waiting.text, "at once, with how many are ahead"
        statuses_before = len(slack.status_history)
        hold.set()
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    later = [status for _c, thread, status in slack.status_history[statuses_before:] if thread == ts and status]
    assert later[0] == "분석하는 중…", "the normal status once it starts"


async def test_a_question_behind_the_concurrency_limit_shows_its_place(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="busy " * 5, hold=hold))
    async with run_bot(slack, oai, sqlite_url, env={"MAX_CONCURRENT_TURNS": "1"}):
        first = await ask(slack, "<@UBOT> first question")
        await slack.wait_for(lambda: oai.active_streams == 1)
        second = await ask(slack, "<@UBOT> second question")
        await slack.wait_for(lambda: slack.status("C1", second) != "")
        assert slack.status("C1", second) == "is waiting for a free slot… (#1 in line)"
        hold.set()
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", second)) == 1)
    statuses = [status for _c, thread, status in slack.status_history if thread == second and status]
    assert statuses[:2] == ["is waiting for a free slot… (#1 in line)", "is analyzing…"]
    assert answer_texts(slack, "C1", first)
