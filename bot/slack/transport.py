"""People's messages taken where Slack delivers them: checked, recorded and acknowledged before Bolt; every
other request goes on to Bolt unchanged.

Why before Bolt: a burst of mentions arrives as hundreds of deliveries at once (each post twice, as
`app_mention` and `message`, and each message the bot posts comes back as an event too). Bolt's dispatch
(its request object, middleware chain, listener matching and keyword injection) spent about 0.3 ms of CPU per
delivery before our listener ran, and the last delivery of a burst of 400 waited for all the others'
(`bench.ack_latency`). Here one costs a signature check, one JSON parse and `classify`; the acknowledgement
still waits until the message is committed (the group commit in `bot.store.acceptor`), so an acknowledged
message is never lost, and what the listener decides is the same code (`bot.slack.listeners.UserMessages`).

Taken here: a JSON `event_callback` whose event is an `app_mention` or a `message`, over HTTP with a valid
signature (slack_sdk's `SignatureVerifier`, as Bolt checks it: HMAC and the 5-minute window), from a
workspace whose bot user is known (`BotUser`: the start-up `auth.test`, or in OAuth mode the workspace's
installation; a workspace without one is left to Bolt, which authorizes and ignores it as before).
Everything else (url_verification, interactive payloads, other events, bad signatures -> Bolt's 401) is
left to Bolt, which answers it exactly as before, and so is a message it cannot take.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.request.internals import extract_team_id
from slack_sdk.signature import SignatureVerifier

from bot.slack.listeners import UserMessages

MESSAGE_EVENTS = frozenset({"app_mention", "message"})

# bot_user(team_id): the bot's user id in that workspace, or None to leave the delivery to Bolt.
BotUser = Callable[[str], Awaitable[str | None]]


def message_event(body: Any) -> dict[str, Any] | None:
    """The event of an Events API delivery of an `app_mention` or `message`; None for anything else."""
    if not isinstance(body, dict) or body.get("type") != "event_callback":
        return None
    event = body.get("event")
    if not isinstance(event, dict) or event.get("type") not in MESSAGE_EVENTS:
        return None
    return event


class MessageDeliveries:
    """Takes message deliveries from the HTTP endpoint or the Socket Mode connection, or declines them."""

    def __init__(self, messages: UserMessages, *, bot_user: BotUser, signing_secret: str | None = None) -> None:
        self._messages = messages
        self._bot_user = bot_user
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def take_http(self, request: web.Request) -> web.Response | None:
        """Handle a signed message delivery and return its 200, once the message is handled (recorded, or
        found to be a duplicate or not for the bot). None: the request is Bolt's (its body stays readable)."""
        if self._verifier is None or request.content_type != "application/json":
            return None
        raw = await request.read()
        headers = request.headers
        try:
            signed = self._verifier.is_valid(
                raw, headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature")
            )
            body = json.loads(raw) if signed else None
        except ValueError:  # a timestamp that is not a number, or a body that is not JSON
            return None
        if body is None or not await self.take(body):
            return None
        return web.Response(status=200, text="")

    async def take(self, body: Any) -> bool:
        """Handle `body` if it delivers a message event (its origin already verified); False: it is Bolt's."""
        event = message_event(body)
        if event is None:
            return False
        team_id = extract_team_id(body) or body.get("team_id") or event.get("team") or ""
        bot_user_id = await self._bot_user(team_id)
        if bot_user_id is None:
            return False
        await self._messages(event, team_id=team_id, bot_user_id=bot_user_id)
        return True
