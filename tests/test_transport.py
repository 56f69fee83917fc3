"""Which deliveries the transport takes before Bolt (`bot.slack.transport.message_event`)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.transport import message_event

MENTION = {"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "1.1", "channel": "C1"}
MESSAGE = {"type": "message", "user": "U1", "text": "hi", "ts": "1.1", "channel": "C1"}


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        pytest.param({"type": "event_callback", "event": MENTION}, True, id="app_mention"),
        pytest.param({"type": "event_callback", "event": MESSAGE}, True, id="message"),
        pytest.param(
            {"type": "event_callback", "event": {**MESSAGE, "subtype": "message_changed"}}, True, id="edit-classify"
        ),
        pytest.param({"type": "event_callback", "event": {"type": "app_home_opened"}}, False, id="other-event"),
        pytest.param({"type": "event_callback", "event": {"type": "app_uninstalled"}}, False, id="uninstall"),
        pytest.param({"type": "url_verification", "challenge": "x"}, False, id="url-verification"),
        pytest.param({"type": "block_actions", "actions": []}, False, id="interactive"),
        pytest.param({"type": "event_callback", "event": "app_mention"}, False, id="event-not-an-object"),
        pytest.param({"type": "event_callback"}, False, id="no-event"),
        pytest.param(["event_callback"], False, id="not-an-object"),
    ],
)
def test_message_event(body: Any, taken: bool) -> None:
    assert (message_event(body) is not None) is taken
