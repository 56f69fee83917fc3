"""Log setup: one handler on the root logger, human-readable or one JSON object per line.

JSON lines come from python-json-logger (`LOG_FORMAT=json`) and carry `time`, `level`, `logger`,
`message`, and `team`, `channel`, `thread_ts`, `turn_id`, `openai_request_id` whenever they are known:
those live in context variables set where a turn starts (`turn_context`) and where OpenAI's request id
arrives (`set_openai_request_id`), so every library's record logged inside a turn carries them too.
Every record, ours or a library's, with its exception text, passes `Redactor` before it is written:
Slack tokens, OpenAI keys and the configured secrets become `[redacted]`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from bot.domain import ThreadKey

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
CONTEXT_FIELDS = ("team", "channel", "thread_ts", "turn_id", "openai_request_id")
# Slack bot/user/app tokens and OpenAI keys (sk-…, sk-proj-…: long), wherever they appear in a line.
SECRET_PATTERN = re.compile(r"(?<![A-Za-z0-9_-])(?:xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{16,})")
# Third-party DEBUG records carry request bodies and SQL parameters (a question, a file being
# uploaded, a file's profile): these loggers never go below WARNING, whatever LOG_LEVEL says.
QUIET_LOGGERS = (
    "slack_sdk",
    "slack_bolt",
    "httpx",
    "httpx2",
    "openai",
    "aiohttp.access",
    "aiosqlite",
    "sqlalchemy.engine",
    "asyncpg",
)

_fields: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"log_{name}", default=None) for name in CONTEXT_FIELDS
}


@contextlib.contextmanager
def turn_context(*, thread: ThreadKey, turn_id: int) -> Iterator[None]:
    """Within the block (and tasks started in it), log records carry the turn's thread and id."""
    values = {
        "team": thread.team_id,
        "channel": thread.channel,
        "thread_ts": thread.thread_ts,
        "turn_id": str(turn_id),
        "openai_request_id": None,
    }
    tokens = [(_fields[name], _fields[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_openai_request_id(request_id: str | None) -> None:
    """From now on in this task (until its turn ends), records carry OpenAI's request id."""
    if request_id:
        _fields["openai_request_id"].set(request_id)


def context_fields() -> dict[str, str]:
    """The context fields known here."""
    return {name: value for name, var in _fields.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Adds the known context fields to each record (JSON output shows them as keys)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in context_fields().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class QuietLibraries(logging.Filter):
    """Drops records below WARNING from `QUIET_LOGGERS` and their children, also from loggers that set
    their own level (Bolt's `slack_bolt.AsyncApp` follows the root level and logs whole event payloads)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == name or record.name.startswith(name + ".") for name in QUIET_LOGGERS)


class Redactor(logging.Filter):
    """Replaces secrets in the message, its arguments and exception and stack text of every record."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return SECRET_PATTERN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's malformed format string must not drop the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            # Rendered here, so formatters use the redacted text (python-json-logger reads exc_text
            # only when exc_info is empty).
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def json_formatter() -> logging.Formatter:
    """`time` (ISO 8601, UTC, microseconds), `level`, `logger`, `message`, then any context fields."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def setup(*, level: str, log_format: str = "text", secrets: Iterable[str | None] = (), stream: Any = None) -> None:
    """Configure the root logger for the process: one stream handler (stderr), redacting, with context."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(QuietLibraries())
    handler.addFilter(ContextFilter())
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
