"""bot.ops.logging: redaction of every record, context fields, JSON lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.domain import ThreadKey
from bot.ops.logging import Redactor, set_openai_request_id, setup, turn_context


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Authorization: Bearer xoxb-1234-5678-abcDEF", "Authorization: Bearer [redacted]", id="bot-token"),
        pytest.param("user token xoxp-1-2-3 here", "user token [redacted] here", id="user-token"),
        pytest.param("app xapp-1-A1-123-abc", "app [redacted]", id="app-token"),
        pytest.param("key=sk-proj-AbC_123-xyz0123456789;", "key=[redacted];", id="openai-project-key"),
        pytest.param("configured my-signing-secret!", "configured [redacted]!", id="configured-secret"),
        pytest.param("turn 12 accepted in C1", "turn 12 accepted in C1", id="nothing-secret"),
        pytest.param("task-sk-like-0123456789abcdef", "task-sk-like-0123456789abcdef", id="not-a-key"),
        pytest.param("sk-short", "sk-short", id="too-short-for-a-key"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert Redactor(["my-signing-secret", None]).redact(text) == expected


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    setup(level="DEBUG", log_format="json", secrets=["s3cr3t-value"], stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_json_lines_carry_context_and_redact_library_records_and_tracebacks(captured: io.StringIO) -> None:
    with turn_context(thread=ThreadKey("T1", "C1", "1700000000.000100"), turn_id=7):
        set_openai_request_id("req_123")
        try:
            raise RuntimeError("upstream said xoxb-9-9-secret and s3cr3t-value")
        except RuntimeError:
            logging.getLogger("some.library").exception("call failed with %s", "sk-live-0123456789abcdef")
    logging.getLogger("bot").info("outside a turn")
    logging.getLogger("slack_bolt.AsyncApp").debug("Received message: %s", "a whole event payload")

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert len(lines) == 2, "library DEBUG records are dropped"
    failed, outside = lines
    assert failed["level"] == "ERROR" and failed["logger"] == "some.library"
    assert failed["message"] == "call failed with [redacted]"
    assert "RuntimeError: upstream said [redacted] and [redacted]" in failed["exc_info"]
    assert (failed["team"], failed["channel"], failed["thread_ts"]) == ("T1", "C1", "1700000000.000100")
    assert (failed["turn_id"], failed["openai_request_id"]) == ("7", "req_123")
    assert outside["message"] == "outside a turn" and "turn_id" not in outside and "time" in outside
