"""Domain values shared by the Slack side, the OpenAI side and the store."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from bot.i18n import Language, detect_language

_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True, order=True)
class ThreadKey:
    """One Slack thread: the unit of a session (one OpenAI conversation)."""

    team_id: str
    channel: str
    thread_ts: str


@dataclass(frozen=True)
class SlackFile:
    """The parts of a Slack file object the bot uses."""

    id: str
    name: str
    size: int | None = None
    mimetype: str = ""
    filetype: str = ""
    url: str | None = None
    mode: str = "hosted"
    is_external: bool = False
    external_type: str = ""
    is_stub: bool = False

    @classmethod
    def from_slack(cls, obj: dict[str, Any]) -> SlackFile:
        """Build from a Slack file object (event `files[]`, `files.info`, history)."""
        return cls(
            id=str(obj["id"]),
            name=str(obj.get("name") or obj.get("title") or obj["id"]),
            size=int(obj["size"]) if isinstance(obj.get("size"), int) else None,
            mimetype=str(obj.get("mimetype") or ""),
            filetype=str(obj.get("filetype") or ""),
            url=obj.get("url_private_download") or obj.get("url_private"),
            mode=str(obj.get("mode") or "hosted"),
            is_external=bool(obj.get("is_external")),
            external_type=str(obj.get("external_type") or ""),
            is_stub=obj.get("file_access") == "check_file_info",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "url_private_download": self.url,
            "mode": self.mode,
            "is_external": self.is_external,
            "external_type": self.external_type,
            **({"file_access": "check_file_info"} if self.is_stub else {}),
        }


@dataclass(frozen=True)
class SharedFile:
    """A Slack file as shared in a thread: by whom and with which message."""

    file: SlackFile
    message_ts: str
    user_id: str


@dataclass(frozen=True)
class Turn:
    """One user message the bot must answer exactly once."""

    id: int
    thread: ThreadKey
    ts: str
    user_id: str
    text: str
    files: tuple[SlackFile, ...] = ()
    is_thread_reply: bool = False
    attempts: int = 0
    # The Slack messages of an answer that an earlier attempt started (to replace after a restart).
    answer_messages: tuple[str, ...] = ()
    # time.monotonic() when this process accepted (or, after a restart, claimed) the turn.
    accepted_at: float = field(default_factory=time.monotonic, compare=False)

    @property
    def language(self) -> Language:
        return detect_language(self.text)

    @property
    def question(self) -> str:
        """The message text without mentions."""
        return strip_mentions(self.text)


@dataclass(frozen=True)
class Incoming:
    """A user message that may be for the bot."""

    thread: ThreadKey
    ts: str
    user_id: str
    text: str
    files: tuple[SlackFile, ...]
    is_thread_reply: bool
    # A mention of the bot, or any message in a DM: it may start a session and makes its author a
    # participant of the thread's session.
    starts_session: bool
    is_dm: bool = False
    # FOLLOW_UPS=participants: accept this (un-mentioned) reply only from a participant of the session.
    requires_participant: bool = False


@dataclass(frozen=True)
class Session:
    """What the bot remembers of a thread between turns and restarts."""

    thread: ThreadKey
    conversation_id: str | None = None
    container_id: str | None = None
    root_checked: bool = False


@dataclass(frozen=True)
class ThreadFile:
    """A file of the thread that is in OpenAI's Files API."""

    slack_file_id: str
    openai_file_id: str
    filename: str
    size_bytes: int
    description: str = ""
    sha256: str = ""


def strip_mentions(text: str) -> str:
    """`text` without Slack user mentions (`<@U123>`), trimmed."""
    return _MENTION.sub("", text or "").strip()


def mentions(text: str, user_id: str) -> bool:
    """True if `text` contains a Slack mention of `user_id`."""
    return any(m.group(1) == user_id for m in _MENTION.finditer(text or ""))
