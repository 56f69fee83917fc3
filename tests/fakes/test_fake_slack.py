"""Self-test of tests/fakes/slack.py: the real slack_sdk / slack_bolt clients driven against FakeSlack."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack

MENTION = "<@UBOT> analyse this"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)


async def api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


@dataclass
class Receiver:
    """An HTTP endpoint standing in for an app: verifies signatures, records bodies, scripted replies."""

    secret: str
    url: str = ""
    requests: list[tuple[dict[str, str], dict[str, Any], bool]] = field(default_factory=list)
    script: list[tuple[int, float]] = field(default_factory=list)  # (status, delay) per request, then 200

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        valid = SignatureVerifier(self.secret).is_valid(
            body=raw,
            timestamp=request.headers["X-Slack-Request-Timestamp"],
            signature=request.headers["X-Slack-Signature"],
        )
        self.requests.append((dict(request.headers), json.loads(raw), valid))
        status, delay = self.script.pop(0) if self.script else (200, 0.0)
        await asyncio.sleep(delay)
        return web.Response(status=status)

    def events(self) -> list[dict[str, Any]]:
        return [body["event"] for _, body, _ in self.requests]


@pytest.fixture
async def receiver(slack: FakeSlack) -> AsyncIterator[Receiver]:
    rec = Receiver(slack.signing_secret)
    app = web.Application()
    app.router.add_post("/slack/events", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    slack.http_events_url = rec.url
    yield rec
    await slack.wait_delivered()
    await runner.cleanup()


# ---------------------------------------------------------------------------------------------- Web API basics


async def test_auth_test_and_token_checks(slack: FakeSlack, client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team_id"], resp["app_id"]) == ("UBOT", "B1", "T1", "A1")
    assert "chat:write" in resp.headers["x-oauth-scopes"]
    assert slack.calls_to("auth.test")[0].token == "xoxb-test-token"

    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    assert (await api_error(wrong.auth_test())).response["error"] == "invalid_auth"
    anonymous = AsyncWebClient(base_url=slack.api_url)
    assert (await api_error(anonymous.auth_test())).response["error"] == "not_authed"
    app_level = AsyncWebClient(token=slack.app_token, base_url=slack.api_url)
    assert (await api_error(app_level.auth_test())).response["error"] == "not_allowed_token_type"
    assert (await api_error(client.apps_connections_open(app_token=slack.bot_token))).response[
        "error"
    ] == "not_allowed_token_type"
    assert (await api_error(client.api_call("nope.nothing"))).response["error"] == "unknown_method"


async def test_post_message_threads_and_errors(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text="hello", deliver=False)
    resp = await client.chat_postMessage(
        channel="C1",
        thread_ts=root["ts"],
        text="reply",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*reply*"}}],
    )
    assert resp["message"]["bot_id"] == "B1" and resp["message"]["thread_ts"] == root["ts"]
    assert [(m.user, m.text) for m in slack.thread("C1", root["ts"])] == [("U1", "hello"), ("UBOT", "reply")]
    assert [m.ts for m in slack.channel_root_messages("C1")] == [root["ts"]]
    assert slack.calls_to("chat.postMessage")[0].params["blocks"][0]["type"] == "section"

    slack.add_channel("C2", bot_is_member=False)
    cases = [
        ({"channel": "C404", "text": "x"}, "channel_not_found"),
        ({"channel": "C2", "text": "x"}, "not_in_channel"),
        ({"channel": "C1", "text": "x", "thread_ts": "1.000000"}, "thread_not_found"),
        ({"channel": "C1", "text": "x", "thread_ts": resp["ts"]}, "cannot_reply_to_message"),
        ({"channel": "C1"}, "no_text"),
        ({"channel": "C1", "text": "x", "markdown_text": "**x**"}, "markdown_text_conflict"),
        ({"channel": "C1", "markdown_text": "x" * 12_001}, "msg_too_long"),
        ({"channel": "C1", "text": "x", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
    ]
    for kwargs, error in cases:  # api_call: the SDK itself warns about some of these before sending
        assert (await api_error(client.api_call("chat.postMessage", json=kwargs))).response["error"] == error, kwargs
    ok = await client.api_call(
        "chat.postMessage", json={"channel": "C1", "thread_ts": root["ts"], "markdown_text": "**bold**"}
    )
    assert ok["message"]["text"] == "**bold**"
    await client.chat_postMessage(channel="C1", thread_ts=root["ts"], text="loud", reply_broadcast=True)
    assert [m.text for m in slack.channel_root_messages("C1")] == ["hello", "loud"]
    with pytest.raises(RuntimeError, match="no transport"):
        await slack.user_posts(channel="C1", text="nobody listens")


async def test_post_ephemeral_is_seen_by_one_user_only(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text="hello", deliver=False)
    resp = await client.chat_postEphemeral(channel="C1", user="U2", text="only you", thread_ts=root["ts"])
    assert resp["message_ts"]
    await client.chat_postEphemeral(channel="D1", user="U1", text="in the DM")
    assert [(e.channel, e.text, e.thread_ts) for e in slack.ephemerals("U2")] == [("C1", "only you", root["ts"])]
    assert [e.text for e in slack.ephemerals("U1", channel="D1")] == ["in the DM"]
    assert [m.text for m in slack.thread("C1", root["ts"])] == ["hello"], "nobody else sees it in the thread"
    assert [m.text for m in slack.channel_root_messages("C1")] == ["hello"]
    assert [m["text"] for m in (await client.conversations_replies(channel="C1", ts=root["ts"]))["messages"]] == [
        "hello"
    ]
    assert not [e for e in slack.events if e["event"].get("bot_id")], "no message event for an ephemeral"

    slack.add_channel("C2", bot_is_member=False)
    slack.add_channel("G3", members={"U1"})
    cases = [
        ({"channel": "C404", "user": "U1", "text": "x"}, "channel_not_found"),
        ({"channel": "C2", "user": "U1", "text": "x"}, "not_in_channel"),
        ({"channel": "G3", "user": "U2", "text": "x"}, "user_not_in_channel"),
        ({"channel": "D1", "user": "U2", "text": "x"}, "user_not_in_channel"),
        ({"channel": "C1", "user": "U404", "text": "x"}, "user_not_in_channel"),
        ({"channel": "C1", "user": "U1"}, "no_text"),
        ({"channel": "C1", "user": "U1", "markdown_text": "**x**"}, "invalid_arguments"),
        ({"channel": "C1", "user": "U1", "text": "x", "thread_ts": "1.000000"}, "thread_not_found"),
    ]
    for kwargs, error in cases:
        assert (await api_error(client.api_call("chat.postEphemeral", json=kwargs))).response["error"] == error, kwargs
    assert len(slack.ephemerals()) == 2


async def test_chat_update_only_own_messages(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text="hi", deliver=False)
    own = await client.chat_postMessage(channel="C1", thread_ts=root["ts"], text="draft")
    updated = await client.chat_update(channel="C1", ts=own["ts"], text="final")
    assert updated["text"] == "final" and slack.thread("C1", root["ts"])[1].text == "final"
    assert (await api_error(client.chat_update(channel="C1", ts=root["ts"], text="x"))).response[
        "error"
    ] == "cant_update_message"
    assert (await api_error(client.chat_update(channel="C1", ts="1.2", text="x"))).response[
        "error"
    ] == "message_not_found"


async def test_replies_pagination_and_history(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text="root", deliver=False)
    for i in range(4):
        await slack.user_posts(channel="C1", text=f"r{i}", thread_ts=root["ts"], deliver=False)
    later = await slack.user_posts(channel="C1", text="later", deliver=False)

    page = await client.conversations_replies(channel="C1", ts=root["ts"], limit=2)
    assert [m["text"] for m in page["messages"]] == ["root", "r0"] and page["has_more"] is True
    assert page["messages"][0]["thread_ts"] == root["ts"] and page["messages"][0]["reply_count"] == 4
    assert page["messages"][1]["parent_user_id"] == "U1"
    cursor, texts = page["response_metadata"]["next_cursor"], []
    while cursor:
        page = await client.conversations_replies(channel="C1", ts=root["ts"], limit=2, cursor=cursor)
        texts += [m["text"] for m in page["messages"]]
        cursor = page.get("response_metadata", {}).get("next_cursor", "")
    assert texts == ["r1", "r2", "r3"]  # continuation pages omit the parent
    assert (await api_error(client.conversations_replies(channel="C1", ts="1.5"))).response[
        "error"
    ] == "thread_not_found"

    hist = await client.conversations_history(channel="C1")
    assert [m["text"] for m in hist["messages"]] == ["later", "root"]
    one = await client.conversations_history(channel="C1", latest=root["ts"], inclusive=True, limit=1)
    assert [m["ts"] for m in one["messages"]] == [root["ts"]]
    assert later["ts"] > root["ts"]


async def test_users_info_locale_only_when_asked(client: AsyncWebClient) -> None:
    plain = await client.users_info(user="U1")
    assert "locale" not in plain["user"]
    assert (await client.users_info(user="U1", include_locale=True))["user"]["locale"] == "ko-KR"
    assert (await api_error(client.users_info(user="U404"))).response["error"] == "user_not_found"


async def test_reactions_and_status(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text="hi", deliver=False)
    await client.reactions_add(channel="C1", timestamp=root["ts"], name="eyes")
    assert (await api_error(client.reactions_add(channel="C1", timestamp=root["ts"], name="eyes"))).response[
        "error"
    ] == "already_reacted"
    assert slack.thread("C1", root["ts"])[0].reactions == ["eyes"] and slack.thread("C1", "1.0") == []
    await client.assistant_threads_setStatus(
        channel_id="C1", thread_ts=root["ts"], status="is reading…", loading_messages=["a", "b"]
    )
    assert slack.status("C1", root["ts"]) == "is reading…"
    assert slack.calls_to("assistant.threads.setStatus")[0].params["loading_messages"] == ["a", "b"]
    await client.chat_postMessage(channel="C1", thread_ts=root["ts"], text="done")
    assert slack.status("C1", root["ts"]) == ""
    assert slack.status_history == [("C1", root["ts"], "is reading…"), ("C1", root["ts"], "")]


async def test_rate_limit_injection(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    err = await api_error(client.chat_postMessage(channel="C1", text="x"))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "7"
    assert err.response["error"] == "ratelimited"

    slack.fail_next("conversations.history", error="internal_error")
    assert (await api_error(client.conversations_history(channel="C1"))).response["error"] == "internal_error"

    slack.fail_next("auth.test", status=429, retry_after=0)
    patient = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    assert (await patient.auth_test())["ok"] is True
    assert len(slack.calls_to("auth.test")) == 2


# ---------------------------------------------------------------------------------------------- streaming


async def test_chat_stream_helper_in_channel_thread(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text=MENTION, deliver=False)
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts=root["ts"], status="is thinking…")
    stream = await client.chat_stream(
        channel="C1", thread_ts=root["ts"], recipient_team_id="T1", recipient_user_id="U1", buffer_size=5
    )
    await stream.append(markdown_text="Hello ")
    reply = slack.thread("C1", root["ts"])[1]
    assert reply.streaming and reply.text == "Hello " and reply.bot
    assert slack.status("C1", root["ts"]) == ""
    await stream.append(chunks=[{"type": "task_update", "id": "t1", "title": "Load CSV", "status": "in_progress"}])
    await stream.append(markdown_text="world")
    conflict = await api_error(client.chat_update(channel="C1", ts=str(stream.ts), text="x"))
    assert conflict.response["error"] == "streaming_state_conflict"
    await stream.stop(blocks=[{"type": "context", "elements": [{"type": "mrkdwn", "text": "feedback"}]}])
    reply = slack.thread("C1", root["ts"])[1]
    assert (reply.text, reply.streaming, reply.blocks[0]["type"]) == ("Hello world", False, "context")
    assert reply.tasks[0]["status"] == "in_progress"
    assert slack.calls_to("chat.startStream")[0].params["chunks"] == [{"type": "markdown_text", "text": "Hello "}]
    after = await api_error(client.chat_appendStream(channel="C1", ts=str(stream.ts), markdown_text="more"))
    assert after.response["error"] == "message_not_in_streaming_state"
    assert [m.ts for m in slack.channel_root_messages("C1")] == [root["ts"]]


async def test_stream_recipients_and_limits(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text="q", deliver=False)
    missing_team = await api_error(client.chat_startStream(channel="C1", thread_ts=root["ts"], markdown_text="x"))
    assert missing_team.response["error"] == "missing_recipient_team_id"
    missing_user = await api_error(
        client.chat_startStream(channel="C1", thread_ts=root["ts"], recipient_team_id="T1", markdown_text="x")
    )
    assert missing_user.response["error"] == "missing_recipient_user_id"
    dm_root = await slack.user_posts(channel="D1", text="q", deliver=False)
    started = await client.chat_startStream(channel="D1", thread_ts=dm_root["ts"], markdown_text="ok")
    too_long = await api_error(client.chat_appendStream(channel="D1", ts=started["ts"], markdown_text="x" * 12_001))
    assert too_long.response["error"] == "msg_too_long"
    await client.chat_appendStream(channel="D1", ts=started["ts"], markdown_text="x" * 12_000)
    await client.chat_stopStream(channel="D1", ts=started["ts"])


async def test_stream_expires() -> None:
    async with FakeSlack(stream_ttl_s=0.2) as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        root = await slack.user_posts(channel="C1", text="q", deliver=False)
        started = await client.chat_startStream(
            channel="C1", thread_ts=root["ts"], recipient_team_id="T1", recipient_user_id="U1", markdown_text="partial"
        )
        await client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text=" answer")
        await slack.wait_for(lambda: not slack.thread("C1", root["ts"])[1].streaming, timeout=2)
        for call in (
            client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="late"),
            client.chat_stopStream(channel="C1", ts=started["ts"]),
        ):
            assert (await api_error(call)).response["error"] == "message_not_in_streaming_state"
        await client.chat_update(channel="C1", ts=started["ts"], text="partial answer (complete)")
        assert slack.thread("C1", root["ts"])[1].text == "partial answer (complete)"


# ---------------------------------------------------------------------------------------------- files


async def test_file_hosting_and_sign_in_page(slack: FakeSlack, client: AsyncWebClient, tmp_path: Path) -> None:
    f = slack.add_file(name="sales.csv", content=b"month,revenue\n1,10\n")
    assert f["id"].startswith("F") and f["size"] == 19 and f["mode"] == "hosted"
    assert (await client.files_info(file=f["id"]))["file"]["url_private_download"] == f["url_private_download"]
    assert (await api_error(client.files_info(file="F404"))).response["error"] == "file_not_found"

    big = tmp_path / "big.csv"
    big.write_bytes(b"a,b\n" * 300_000)
    on_disk = slack.add_file(name="big.csv", content_path=big)
    gone = slack.add_file(name="old.csv", content=b"x", mode="tombstone")
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {slack.bot_token}"}
        async with http.get(f["url_private_download"], headers=auth) as resp:
            assert resp.status == 200 and resp.content_type == "text/csv"
            assert await resp.read() == b"month,revenue\n1,10\n"
        async with http.get(on_disk["url_private"], headers=auth) as resp:
            assert len(await resp.read()) == on_disk["size"] == 1_200_000
        for headers in ({}, {"Authorization": "Bearer xoxb-wrong"}):
            async with http.get(f["url_private_download"], headers=headers) as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
                assert (await resp.text()).startswith("<!DOCTYPE html>")
        async with http.get(gone["url_private_download"], headers=auth) as resp:
            assert resp.status == 404
    assert [d.status for d in slack.file_downloads()] == [200, 200, 200, 200, 404]
    assert slack.file_downloads()[2].token is None
    assert slack.file_downloads()[0].headers["Authorization"] == f"Bearer {slack.bot_token}"


async def test_files_upload_v2_into_thread(slack: FakeSlack, client: AsyncWebClient) -> None:
    root = await slack.user_posts(channel="C1", text="chart please", deliver=False)
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts=root["ts"], status="is drawing…")
    resp = await client.files_upload_v2(
        channel="C1",
        thread_ts=root["ts"],
        content=b"\x89PNG fake",
        filename="chart.png",
        title="Revenue by month",
        initial_comment="Revenue by month",
    )
    assert resp["file"]["title"] == "Revenue by month" and resp["file"]["mimetype"] == "image/png"
    reply = slack.thread("C1", root["ts"])[1]
    assert reply.bot and reply.text == "Revenue by month" and reply.files[0]["id"] == resp["file"]["id"]
    assert slack.status("C1", root["ts"]) == ""
    assert slack.file_uploads()[0].params["received_length"] == 9
    info = await client.files_info(file=resp["file"]["id"])
    assert info["file"]["shares"]["public"]["C1"][0]["thread_ts"] == root["ts"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(info["file"]["url_private_download"], headers={"Authorization": f"Bearer {slack.bot_token}"}) as got,
    ):
        assert await got.read() == b"\x89PNG fake"

    err = await api_error(client.files_completeUploadExternal(files=[{"id": "F404", "title": "x"}]))
    assert err.response["error"] == "file_not_found"
    ticket = await client.files_getUploadURLExternal(filename="a.png", length=3)
    not_uploaded = await api_error(client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}]))
    assert not_uploaded.response["error"] == "file_not_found"
    twice = await api_error(client.files_completeUploadExternal(files=[{"id": resp["file"]["id"]}]))
    assert twice.response["error"] == "file_not_found"


async def test_stub_files_and_external_files(slack: FakeSlack, client: AsyncWebClient, receiver: Receiver) -> None:
    stub = slack.add_file(name="s.csv", content=b"a\n1\n", stub=True)
    external = slack.add_file(name="sheet.csv", content=b"", mode="external", external_type="gdrive")
    assert external["is_external"] and "url_private_download" not in external
    await slack.user_posts(channel="C1", text="", files=[stub, external])
    await slack.wait_for(lambda: len(receiver.requests) == 1)
    files = receiver.events()[0]["files"]
    assert files[0] == {"id": stub["id"], "mode": "hosted", "file_access": "check_file_info"}
    assert (await client.files_info(file=stub["id"]))["file"]["url_private_download"] == stub["url_private_download"]


# ---------------------------------------------------------------------------------------------- events


async def test_event_shapes_over_signed_http(slack: FakeSlack, client: AsyncWebClient, receiver: Receiver) -> None:
    csv = slack.add_file(name="sales.csv", content=b"a,b\n")
    root = await slack.user_posts(channel="C1", text=MENTION, files=[csv])
    await slack.wait_for(lambda: len(receiver.requests) == 2)
    mention, message = receiver.events()
    assert mention["type"] == "app_mention" and mention["files"][0]["id"] == csv["id"]
    assert {"type": "user", "user_id": "UBOT"} in mention["blocks"][0]["elements"][0]["elements"]
    assert (message["type"], message["subtype"], message["channel_type"], message["upload"]) == (
        "message",
        "file_share",
        "channel",
        False,
    )
    assert mention["ts"] == message["ts"] == root["ts"] and "thread_ts" not in mention
    (h1, b1, valid1), (_, b2, valid2) = receiver.requests
    assert valid1 and valid2 and b1["event_id"] != b2["event_id"] and "X-Slack-Retry-Num" not in h1
    assert b1["authorizations"][0] == {
        "enterprise_id": None,
        "team_id": "T1",
        "user_id": "UBOT",
        "is_bot": True,
        "is_enterprise_install": False,
    }

    await slack.user_posts(channel="C1", text="and by region?", thread_ts=root["ts"])
    await slack.user_posts(channel="D1", text=MENTION)
    slack.add_channel("C9", bot_is_member=False)
    await slack.user_posts(channel="C9", text=MENTION)
    await client.chat_postMessage(channel="C1", thread_ts=root["ts"], text="on it")
    await slack.wait_for(lambda: len(receiver.requests) == 5)
    reply, dm, echo = receiver.events()[2:]
    assert (reply["type"], reply["thread_ts"], reply["parent_user_id"]) == ("message", root["ts"], "U1")
    assert (dm["type"], dm["channel_type"]) == ("message", "im")
    assert (echo["user"], echo["bot_id"], echo["app_id"], echo.get("subtype")) == ("UBOT", "B1", "A1", None)
    await client.chat_update(channel="C1", ts=echo["ts"], text="done")
    await slack.wait_for(lambda: len(receiver.requests) == 6)
    changed = receiver.events()[5]
    assert (changed["subtype"], changed["hidden"], changed["message"]["user"]) == ("message_changed", True, "UBOT")
    assert (changed["message"]["text"], changed["previous_message"]["text"]) == ("done", "on it")


async def test_http_retries_on_error_and_timeout(receiver: Receiver) -> None:
    async with FakeSlack(ack_timeout_s=0.3) as slack:
        slack.http_events_url = receiver.url
        receiver.script = [(500, 0.0), (200, 0.0)]
        await slack.user_posts(channel="C1", text="one")
        await slack.wait_delivered()
        assert [s for s, _ in slack.http_deliveries] == [500, 200]
        retry_headers = receiver.requests[1][0]
        assert (retry_headers["X-Slack-Retry-Num"], retry_headers["X-Slack-Retry-Reason"]) == ("1", "http_error")
        assert receiver.requests[0][1]["event_id"] == receiver.requests[1][1]["event_id"]

        receiver.script = [(200, 0.6)]
        await slack.user_posts(channel="C1", text="two")
        await slack.wait_delivered()
        assert receiver.requests[3][0]["X-Slack-Retry-Reason"] == "http_timeout"
        assert len(receiver.requests) == 4 and len(slack.http_deliveries) == 4  # the slow first one finished too
        assert max(latency for _, latency in slack.http_deliveries) >= 0.6


async def test_bolt_http_mode_and_bad_signatures(slack: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
        signing_secret=slack.signing_secret,
        process_before_response=True,
    )
    mentions: list[str] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        mentions.append(event["ts"])

    @app.event("message")
    async def on_message() -> None:
        pass

    runner = web.AppRunner(app.web_app(), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        body = json.dumps(
            slack._envelope(
                {"type": "app_mention", "user": "U1", "text": "x", "ts": "1.1", "channel": "C1", "event_ts": "1.1"}
            )
        ).encode()
        assert (await slack.post_signed(url, body, secret="wrong"))[0] == 401
        assert (await slack.post_signed(url, body, timestamp=str(int(time.time()) - 600)))[0] == 401
        slack.http_events_url = url
        root = await slack.user_posts(channel="C1", text=MENTION)
        await slack.wait_delivered()
        assert mentions == [root["ts"]] and [s for s, _ in slack.http_deliveries] == [200, 200]
    finally:
        await runner.cleanup()


async def test_bolt_socket_mode_end_to_end(slack: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
        signing_secret=slack.signing_secret,
        process_before_response=True,
    )
    seen: list[tuple[str, str | None]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        seen.append(("app_mention", event["user"]))
        await say(text="on it", thread_ts=event["ts"])

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        seen.append(("message", event.get("user")))

    handler = AsyncSocketModeHandler(app, slack.app_token)
    await handler.connect_async()
    try:
        await slack.wait_socket_connected()
        root = await slack.user_posts(channel="C1", text=MENTION)
        await slack.wait_for(lambda: len(slack.thread("C1", root["ts"])) == 2)
        await slack.wait_delivered()
        assert sorted(seen) == [("app_mention", "U1"), ("message", "U1")]  # own echo ignored by Bolt
        assert len(slack.acks) == 3 and all(latency < 3 for latency in slack.acks.values())
        assert slack.events[-1]["event"]["bot_id"] == "B1"

        await slack.disconnect_socket()
        await slack.wait_for(lambda: slack.socket_connections == 2)
        await slack.user_posts(channel="C1", text="no mention")
        await slack.wait_delivered()
        assert seen[-1] == ("message", "U1") and len(slack.calls_to("apps.connections.open")) == 2
    finally:
        await handler.close_async()


async def test_socket_redelivers_when_not_acked() -> None:
    async with FakeSlack(ack_timeout_s=0.2) as slack:
        opener = AsyncWebClient(base_url=slack.api_url)
        url = (await opener.apps_connections_open(app_token=slack.app_token))["url"]
        assert url.startswith("ws://127.0.0.1:")
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            hello = await ws.receive_json()
            assert hello["type"] == "hello" and hello["connection_info"] == {"app_id": "A1"}
            await slack.user_posts(channel="C1", text="ping")
            first = await ws.receive_json()
            second = await ws.receive_json()  # not acked within 0.2 s -> redelivered
            assert (first["retry_attempt"], second["retry_attempt"], second["retry_reason"]) == (0, 1, "timeout")
            assert first["payload"]["event_id"] == second["payload"]["event_id"]
            assert first["accepts_response_payload"] is False and first["type"] == "events_api"
            await ws.send_json({"envelope_id": second["envelope_id"]})
            await slack.wait_delivered()
            assert list(slack.acks) == [second["envelope_id"]]


async def test_workspaces_have_their_own_tokens_and_oauth_installs_them(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_team("T2", name="Second", bot_user_id="UBOT2", bot_id="B2")
    with slack.as_team("T2"):
        slack.add_channel("C2")
        file = slack.add_file(name="two.csv", content=b"a\n1\n")
    assert slack.token_of("T2") is None, "not installed until OAuth"

    # Client id and secret as slack_sdk sends them (Basic auth); a code works once.
    oauth = AsyncWebClient(base_url=slack.api_url)
    code = slack.issue_code("T2")
    assert (
        await api_error(oauth.oauth_v2_access(client_id=slack.client_id, client_secret="wrong", code=code))
    ).response["error"] == "bad_client_secret"
    granted = await oauth.oauth_v2_access(client_id=slack.client_id, client_secret=slack.client_secret, code=code)
    assert granted["team"] == {"id": "T2", "name": "Second"} and granted["bot_user_id"] == "UBOT2"
    token = granted["access_token"]
    assert token.startswith("xoxb-") and token == slack.token_of("T2") != slack.bot_token
    again = oauth.oauth_v2_access(client_id=slack.client_id, client_secret=slack.client_secret, code=code)
    assert (await api_error(again)).response["error"] == "invalid_code"

    # Each token acts in its own workspace only.
    second = AsyncWebClient(token=token, base_url=slack.api_url)
    assert (await second.auth_test())["team_id"] == "T2" and (await client.auth_test())["team_id"] == "T1"
    assert (await api_error(client.chat_postMessage(channel="C2", text="x"))).response["error"] == "channel_not_found"
    assert (await api_error(second.files_info(file="F00000000"))).response["error"] == "file_not_found"
    assert (await second.files_info(file=file["id"]))["file"]["user_team"] == "T2"
    async with aiohttp.ClientSession() as http:
        url = file["url_private_download"]
        async with http.get(url, headers={"Authorization": f"Bearer {slack.bot_token}"}) as resp:
            assert resp.content_type == "text/html", "another workspace's token is not signed in here"
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert await resp.read() == b"a\n1\n"

    # Uninstall: the token is revoked and the events carry the workspace.
    slack.http_events_url = "http://127.0.0.1:9/slack/events"  # nothing listens: deliveries are only recorded
    await slack.uninstall("T2")
    assert (await api_error(second.auth_test())).response["error"] == "token_revoked"
    kinds = [(e["team_id"], e["event"]["type"]) for e in slack.events[-2:]]
    assert kinds == [("T2", "tokens_revoked"), ("T2", "app_uninstalled")]
    assert slack.events[-2]["event"]["tokens"] == {"oauth": [], "bot": ["UBOT2"]}


CHART = {
    "type": "data_visualization",
    "title": "월별 매출",
    "chart": {
        "type": "bar",
        "series": [{"name": "매출", "data": [{"label": "1월", "value": 10}]}],
        "axis_config": {"categories": ["1월"]},
    },
}


async def test_data_visualization_blocks_are_validated_like_slack(slack: FakeSlack, client: AsyncWebClient) -> None:
    ok = await client.chat_postMessage(channel="C1", text="fallback", blocks=[CHART, CHART])
    assert ok["ok"] and slack.calls_to("chat.postMessage")[-1].params["blocks"] == [CHART, CHART]
    too_long = {**CHART, "chart": {**CHART["chart"], "axis_config": {"categories": ["가" * 21]}}}
    pie_zero = {**CHART, "chart": {"type": "pie", "segments": [{"label": "a", "value": 0}]}}
    for blocks in ([CHART] * 3, [too_long], [pie_zero], [{**CHART, "title": "x" * 51}]):
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel="C1", text="fallback", blocks=blocks)
        assert refused.value.response["error"] == "invalid_blocks"
    slack.charts_enabled = False
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C1", text="fallback", blocks=[CHART])
    assert refused.value.response["error"] == "invalid_blocks"
