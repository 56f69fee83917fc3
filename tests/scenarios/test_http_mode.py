"""HTTP mode: signed Events API deliveries at /slack/events, readiness at /healthz."""

from __future__ import annotations

import json
import time

import aiohttp

from tests.conftest import answer_texts, free_port, run_bot
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack


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
