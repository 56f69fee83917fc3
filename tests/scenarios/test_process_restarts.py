"""The real process (`python -m bot`): kill -9 and SIGTERM lose nothing; the turn is answered after restart."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

from tests.conftest import answer_texts, bot_process, bot_replies, free_port
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack


def reply_ts_recorded(db_path: Path) -> bool:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT reply_ts FROM turns").fetchone()
    return bool(row and row[0])


async def test_kill_9_mid_answer_is_answered_after_restart(slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path) -> None:
    db_path = tmp_path / "bot.sqlite3"
    url = f"sqlite:///{db_path}"
    hold = asyncio.Event()
    oai.scripts.append(Script(text="부분 답변이 여기까지 나왔는데 " * 5, hold=hold))
    log = tmp_path / "bot.log"
    async with bot_process(slack, oai, url, log) as proc:
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> 리뷰 분석해줘"))["ts"]
        await slack.wait_for(lambda: any(m.text for m in bot_replies(slack, "C1", ts)))
        await slack.wait_for(lambda: reply_ts_recorded(db_path))
        proc.kill()  # SIGKILL: no chance to clean up
        await proc.wait()
    hold.set()

    async with bot_process(slack, oai, url, log):
        await slack.wait_for(lambda: any(t.startswith("Echo:") for t in answer_texts(slack, "C1", ts)), timeout=30)

    texts = answer_texts(slack, "C1", ts)
    assert len(oai.requests_to("POST", "/v1/responses")) == 2
    assert "재시작" in texts[0] and "부분 답변" not in texts[0], "the cut-off answer is replaced by a note"
    assert texts[-1].startswith("Echo:") and "리뷰 분석해줘" in texts[-1]
    assert "Traceback" not in "\n".join(texts)


async def test_sigterm_exits_within_10s_and_the_turn_resumes(slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    hold = asyncio.Event()
    oai.scripts.append(Script(text="a slow analysis ", hold=hold))
    log = tmp_path / "bot.log"
    async with bot_process(slack, oai, url, log) as proc:
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> analyze slowly"))["ts"]
        await slack.wait_for(lambda: len(oai.requests_to("POST", "/v1/responses")) == 1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 12)
        elapsed = time.monotonic() - started
    hold.set()
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"
    assert proc.returncode == 0
    assert "Traceback" not in log.read_text(errors="replace")

    async with bot_process(slack, oai, url, log):
        await slack.wait_for(lambda: any(t.startswith("Echo:") for t in answer_texts(slack, "C1", ts)), timeout=30)
    assert len([m for m in bot_replies(slack, "C1", ts) if m.text.startswith("Echo:")]) == 1


async def test_message_acknowledged_but_not_started_is_answered_after_restart(
    slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    hold = asyncio.Event()
    oai.scripts.append(Script(text="first ", hold=hold))
    log = tmp_path / "bot.log"
    async with bot_process(slack, oai, url, log) as proc:
        first = (await slack.user_posts(channel="C1", text="<@UBOT> first question"))["ts"]
        await slack.wait_for(lambda: len(oai.requests_to("POST", "/v1/responses")) == 1)
        second = (await slack.user_posts(channel="C1", text="second question in the thread", thread_ts=first))["ts"]
        await slack.wait_delivered()
        acked = [
            e for e in slack.envelopes if e["payload"]["event"].get("ts") == second and e["envelope_id"] in slack.acks
        ]
        assert acked, "the second message was acknowledged before the kill"
        proc.kill()
        await proc.wait()
    hold.set()

    async with bot_process(slack, oai, url, log):
        await both_answered_once_in_order(slack, oai, first)


async def test_http_message_acknowledged_then_kill_9_is_answered_after_restart(
    slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path
) -> None:
    """HTTP mode answers 200 only once the message is committed: a kill -9 right after the 200 loses nothing."""
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    port = free_port()
    hold = asyncio.Event()
    oai.scripts.append(Script(text="first ", hold=hold))
    log = tmp_path / "bot.log"
    async with bot_process(slack, oai, url, log, mode="http", port=port) as proc:
        first = (await slack.user_posts(channel="C1", text="<@UBOT> first question"))["ts"]
        await slack.wait_for(lambda: len(oai.requests_to("POST", "/v1/responses")) == 1)
        await slack.wait_delivered()
        second = (await slack.user_posts(channel="C1", text="second question in the thread", thread_ts=first))["ts"]
        event_id = next(e["event_id"] for e in slack.events if e["event"].get("ts") == second)
        await slack.wait_for(lambda: bool(slack.http_statuses.get(event_id)))
        proc.kill()  # at once: the second turn waits behind the first, only the database holds it
        await proc.wait()
    assert slack.http_statuses[event_id] == [200], "the second message was acknowledged before the kill"
    hold.set()

    async with bot_process(slack, oai, url, log, mode="http", port=port):
        await both_answered_once_in_order(slack, oai, first)


async def both_answered_once_in_order(slack: FakeSlack, oai: FakeOpenAI, first: str) -> None:
    """The restarted bot answers the thread's two questions, once each and in order; the second turn was
    started only after the restart."""
    await slack.wait_for(lambda: len([t for t in answer_texts(slack, "C1", first) if "Echo:" in t]) == 2, timeout=30)
    echoes = [t for t in answer_texts(slack, "C1", first) if t.startswith("Echo:")]
    assert len(echoes) == 2, echoes
    assert "first question" in echoes[0] and "second question" in echoes[1], "answered once each, in order"
    asked = [r.json["input"][0]["content"][0]["text"] for r in oai.requests_to("POST", "/v1/responses")]
    assert sum("second question" in text for text in asked) == 1, "the second turn was started only after the restart"
