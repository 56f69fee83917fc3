"""A turn is answered at most once whatever interleaves with it: claim rounds, database errors, restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from pytest_mock import MockerFixture

from bot.errors import StoreUnavailable
from tests.conftest import answer_texts, bot_process, bot_replies, run_bot
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack

REVIEWS_CSV = b"id,rating\n1,5\n2,1\n"


def response_posts(oai: FakeOpenAI) -> list[Any]:
    return oai.requests_to("POST", "/v1/responses")


async def test_a_claim_round_while_the_answer_is_recorded_does_not_answer_again(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, mocker: MockerFixture
) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="the only answer", hold=hold))
    async with run_bot(slack, oai, sqlite_url) as running:
        bot = running.bot
        real_claim = bot.store.claim_unfinished_turns

        async def claim_then_let_the_turn_finish() -> list[Any]:
            # The claim's result reaches the scheduler only after the turn it may hold has finished:
            # the interleaving in which a re-claimed turn would be answered a second time.
            claimed = await real_claim()
            hold.set()
            await bot.scheduler.wait_idle(timeout=10)
            return claimed

        mocker.patch.object(bot.store, "claim_unfinished_turns", side_effect=claim_then_let_the_turn_finish)
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> question"))["ts"]
        await oai.wait_for(lambda: oai.active_streams == 1)
        assert await bot.resume_unfinished() == 0, "a turn this process holds is not claimed again"
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        assert await bot.scheduler.wait_idle(timeout=10)

    assert len(response_posts(oai)) == 1
    assert answer_texts(slack, "C1", ts) == ["the only answer"]


async def test_database_errors_around_an_answer_never_answer_it_twice(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, mocker: MockerFixture
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        store = running.bot.store
        start = mocker.patch.object(store, "start_turn", side_effect=failing_first(store.start_turn, times=1))
        finish = mocker.patch.object(store, "finish_turn", side_effect=failing_first(store.finish_turn, times=2))
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> question"))["ts"]
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        assert await running.bot.scheduler.wait_idle(timeout=10)
        assert finish.call_count == 3 and start.call_count == 2
        assert await running.bot.resume_unfinished() == 0
        assert await store.turn_status(1) == "done"

    assert len(response_posts(oai)) == 1, "no OpenAI call before the turn was started, none after it finished"
    assert len(answer_texts(slack, "C1", ts)) == 1


def failing_first(method: Any, *, times: int) -> Any:
    """A side effect: the database is away for the first `times` calls, then the real `method` runs."""
    failures = iter(range(times))

    async def call(*args: Any, **kwargs: Any) -> Any:
        if next(failures, None) is not None:
            raise StoreUnavailable(f"{method.__name__}: OperationalError: database is locked")
        return await method(*args, **kwargs)

    return call


async def test_feedback_buttons_come_also_when_the_stream_expired_before_it_was_stopped(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    slack.stream_ttl_s = 0.3
    # One short delta opens the stream; the response's remaining events arrive after it expired.
    oai.scripts.append(Script(text="평균은 3점", delay_s=0.15))
    async with run_bot(slack, oai, sqlite_url):
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> 평균?"))["ts"]
        await slack.wait_for(lambda: slack.status("C1", ts) == "" and bool(slack.calls_to("chat.stopStream")))
        await slack.wait_for(lambda: any(m.blocks for m in bot_replies(slack, "C1", ts)))
    assert slack.calls_to("chat.appendStream") == [], "no append noticed the expiry"
    answer = next(m for m in bot_replies(slack, "C1", ts) if m.blocks)
    assert answer.blocks[0] == {"type": "markdown", "text": "평균은 3점"}
    assert any(b["type"] == "context_actions" for b in answer.blocks)


def recorded_answer_messages(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT answer_messages FROM turns").fetchone()
    return len(json.loads(row[0])) if row and row[0] else 0


async def test_a_restart_replaces_the_whole_partial_answer_with_one_note(
    slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path
) -> None:
    db_path = tmp_path / "bot.sqlite3"
    url = f"sqlite:///{db_path}"
    paragraphs = [f"문단 {i}: " + "매출 분석 결과입니다. " * 30 for i in range(60)]
    answer = "\n\n".join(paragraphs)  # about 20,000 characters: two Slack messages
    hold = asyncio.Event()
    oai.scripts.extend([Script(text=answer, hold=hold, hold_after_chars=14_000), Script(text=answer)])
    log = tmp_path / "bot.log"
    csv = slack.add_file(name="sales.csv", content=REVIEWS_CSV)
    pdf = slack.add_file(name="report.pdf", content=b"%PDF-1.4 not data")
    async with bot_process(slack, oai, url, log) as proc:
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> 매출 분석해줘", files=[pdf, csv]))["ts"]
        await slack.wait_for(lambda: recorded_answer_messages(db_path) == 2, timeout=20)
        before = bot_replies(slack, "C1", ts)
        notice = next(m for m in before if "report.pdf" in m.text)
        partial = [m for m in before if m.ts != notice.ts]
        assert len(partial) == 2 and partial[0].text.startswith("문단 0:")
        proc.kill()  # SIGKILL mid-answer
        await proc.wait()
    hold.set()

    async with bot_process(slack, oai, url, log):
        await slack.wait_for(lambda: "문단 59:" in "".join(answer_texts(slack, "C1", ts)), timeout=30)

    after = {m.ts: m for m in bot_replies(slack, "C1", ts)}
    assert "report.pdf" in after[notice.ts].text, "the file notice is never the message that gets overwritten"
    assert "재시작" in after[partial[0].ts].text and "문단" not in after[partial[0].ts].text
    assert partial[1].ts not in after, "the rest of the partial answer is removed"
    shown = "".join(m.text for m in after.values() if m.ts not in {notice.ts, partial[0].ts})
    assert shown.count("문단 0:") == 1 and shown.count("문단 59:") == 1, "answered again in full, once"
    assert len(response_posts(oai)) == 2
