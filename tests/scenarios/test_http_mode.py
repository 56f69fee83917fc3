"""HTTP mode: signed Events API deliveries at /slack/events, readiness at /healthz.

People's messages are taken before Bolt (`bot.slack.transport`); interactive payloads, url_verification and
bad signatures still go through Bolt. Both must behave as one.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import aiohttp

from bot.slack.reply import FEEDBACK_ACTION_ID
from bot.store import Store
from tests.conftest import answer_texts, bot_replies, free_port, run_bot
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack


def recorded_ts(database_url: str) -> list[str]:
    """The ts of every message recorded as a turn."""
    with sqlite3.connect(Path(database_url.removeprefix("sqlite:///"))) as db:
        return [str(row[0]) for row in db.execute("SELECT ts FROM turns ORDER BY id")]


async def test_signed_events_are_answered_and_forged_ones_refused(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    port = free_port()
    async with run_bot(slack, oai, sqlite_url, mode="http", port=port):
        url = f"http://127.0.0.1:{port}/slack/events"
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200

        message = await slack.user_posts(channel="C1", text="<@UBOT> how many rows?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", message["ts"])) == 1)
        assert slack.http_deliveries and all(status == 200 for status, _ in slack.http_deliveries)

        forged = {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": "EvForged",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": "<@UBOT> forged",
                "ts": "1800000000.000100",
                "channel": "C1",
            },
        }
        body = json.dumps(forged).encode()
        status, _ = await slack.post_signed(url, body, secret="not-the-signing-secret")
        assert status == 401
        stale = str(int(time.time()) - 600)
        status, _ = await slack.post_signed(url, body, timestamp=stale)
        assert status == 401
        status, _ = await slack.post_signed(url, body, timestamp="soon")
        assert status >= 400
        assert recorded_ts(sqlite_url) == [message["ts"]], "a refused delivery records nothing"
        challenge = json.dumps({"token": "x", "challenge": "abc123", "type": "url_verification"}).encode()
        status, text = await slack.post_signed(url, challenge)
        assert status == 200 and "abc123" in text

    assert len(oai.requests_to("POST", "/v1/responses")) == 1
    assert "forged" not in json.dumps([r.json for r in oai.requests_to("POST", "/v1/responses")])


async def test_http_retry_of_the_same_event_is_answered_once(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    port = free_port()
    async with run_bot(slack, oai, sqlite_url, mode="http", port=port):
        message = await slack.user_posts(channel="C1", text="<@UBOT> rows?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", message["ts"])) == 1)
        body = next(e for e in slack.events if e["event"].get("ts") == message["ts"])
        url = f"http://127.0.0.1:{port}/slack/events"
        status, _ = await slack.post_signed(
            url,
            json.dumps(body).encode(),
            headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
        )
        assert status == 200
    assert len(oai.requests_to("POST", "/v1/responses")) == 1


async def test_a_burst_over_http_is_acknowledged_and_each_message_answered_once(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    port = free_port()
    async with run_bot(slack, oai, sqlite_url, mode="http", port=port) as running:
        posted = [await slack.user_posts(channel="C1", text=f"<@UBOT> question {i}", deliver=False) for i in range(12)]
        roots = [str(p["ts"]) for p in posted]
        bodies = [e for e in slack.events if e["event"].get("ts") in roots]
        assert len(bodies) == 2 * len(roots), "each post as app_mention and as message"
        await asyncio.gather(*(slack.deliver(body) for body in bodies))
        await slack.deliver(bodies[0], retry_attempt=1, retry_reason="http_timeout")  # Slack's retry, too
        await slack.wait_for(lambda: all(answer_texts(slack, "C1", ts) for ts in roots), timeout=30)
        await slack.wait_delivered()
        assert await running.bot.scheduler.wait_idle(timeout=10)
        assert sorted(recorded_ts(sqlite_url)) == sorted(roots)

    assert slack.http_deliveries and all(status == 200 for status, _ in slack.http_deliveries)
    for i, ts in enumerate(roots):
        answers = answer_texts(slack, "C1", ts)
        assert len(answers) == 1 and re.search(rf"question {i}\b", answers[0]), (i, answers)
    assert len(oai.requests_to("POST", "/v1/responses")) == len(roots)


async def test_stop_over_http_ends_the_running_analysis(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="a long analysis begins ", hold=hold))
    async with run_bot(slack, oai, sqlite_url, mode="http", port=free_port()):
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> analyze everything"))["ts"]
        await slack.wait_for(lambda: oai.active_streams == 1 and any(m.text for m in bot_replies(slack, "C1", ts)))
        await slack.user_posts(channel="C1", text="stop", thread_ts=ts)
        await slack.wait_for(lambda: any("stopped" in t.lower() for t in answer_texts(slack, "C1", ts)))
        await oai.wait_for(lambda: oai.active_streams == 0)
    hold.set()
    assert len(oai.requests_to("POST", "/v1/responses")) == 1, "the stop message itself is not a question"
    assert len(recorded_ts(sqlite_url)) == 1


async def test_feedback_clicks_over_http_are_recorded(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url, mode="http", port=free_port()):
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> rows?"))["ts"]
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        answer = next(m for m in bot_replies(slack, "C1", ts) if m.text)
        response_id = next(iter(oai.responses))
        await slack.click(
            channel="C1", message_ts=answer.ts, action_id=FEEDBACK_ACTION_ID, value=f"bad:{response_id}", user="U2"
        )
        await slack.wait_delivered()
    store = await Store.open(sqlite_url)
    try:
        assert await store.feedback_for(response_id) == [("U2", "bad")]
    finally:
        await store.close()
    assert all(status == 200 for status, _ in slack.http_deliveries)
