"""The floor for `bench.ack_latency`: the least an app can do to acknowledge Slack, on the same transport.

- HTTP: an aiohttp app whose `POST /slack/events` reads the body, checks the signature with slack_sdk's
  `SignatureVerifier` and answers 200 (401 on a bad signature), nothing else; `GET /healthz` answers 200 so
  the fakes can wait for it like for the bot.
- Socket Mode: slack_sdk's aiohttp `SocketModeClient` that sends the envelope's ack as soon as it arrives.

Neither records, dispatches or answers anything: the bot's acknowledgement is reported as a multiple of
this one, measured in the same run against the same burst.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient


def floor_http_app(signing_secret: str) -> web.Application:
    """Verify the signature, answer 200."""
    verifier = SignatureVerifier(signing_secret)

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        if not verifier.is_valid(
            body=body,
            timestamp=headers.get("X-Slack-Request-Timestamp"),
            signature=headers.get("X-Slack-Signature"),
        ):
            return web.Response(status=401)
        return web.Response(status=200)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.add_routes([web.post("/slack/events", events), web.get("/healthz", healthz)])
    return app


@contextlib.asynccontextmanager
async def serving_floor(info: dict[str, str], *, mode: str, port: int) -> AsyncIterator[None]:
    """Serve the floor for `mode` ("http" on `port`, or "socket" connected to the fake Slack) until exit."""
    if mode == "http":
        runner = web.AppRunner(floor_http_app(info["signing_secret"]), handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            yield
        finally:
            await runner.cleanup()
        return
    web_client = AsyncWebClient(base_url=info["api_url"])
    client = SocketModeClient(app_token=info["app_token"], web_client=web_client)

    async def ack(socket: Any, req: SocketModeRequest) -> None:
        await socket.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(ack)
    try:
        await client.connect()  # type: ignore[no-untyped-call]
        yield
    finally:
        await client.close()  # type: ignore[no-untyped-call]
