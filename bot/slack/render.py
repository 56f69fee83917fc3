"""Pure text shaping for Slack: strip sandbox links (also mid-stream) and split at Slack's limits."""

from __future__ import annotations

import re
from collections.abc import Callable

# chat.postMessage / chat.appendStream accept at most 12,000 characters of markdown per call;
# stay a little below so a fence closed by the splitter still fits.
SLACK_MARKDOWN_LIMIT_CHARS = 11_500

_SANDBOX_IMAGE = re.compile(r"!\[[^\]\n]*\]\(sandbox:[^)\s]*\)")
_SANDBOX_LINK = re.compile(r"\[([^\]\n]*)\]\(sandbox:[^)\s]*\)")
_SANDBOX_BARE = re.compile(r"sandbox:(/mnt/data/)?([^\s)\]]+)")
_HOLD_BACK_LIMIT_CHARS = 400


def sandbox_link_labels(text: str) -> dict[str, str]:
    """Map each linked sandbox file name to the link's label: `[월별 매출](sandbox:/mnt/data/a.png)`."""
    labels: dict[str, str] = {}
    for match in re.finditer(r"!?\[([^\]\n]*)\]\(sandbox:([^)\s]*)\)", text):
        label, name = match.group(1).strip(), match.group(2).rsplit("/", 1)[-1]
        if label and name not in labels:
            labels[name] = label
    return labels


def scrub_sandbox_links(text: str) -> str:
    """Replace `sandbox:/mnt/data/…` links (which do not work in Slack) with their label or file name.

    The files themselves are uploaded to the thread separately.
    """
    text = _SANDBOX_IMAGE.sub("", text)
    text = _SANDBOX_LINK.sub(lambda m: f"**{m.group(1)}**" if m.group(1).strip() else "", text)
    return _SANDBOX_BARE.sub(lambda m: m.group(2).rsplit("/", 1)[-1], text)


class StreamScrubber:
    """`scrub_sandbox_links` for text that arrives in pieces.

    Holds back a tail that could still become a sandbox link (an open `[` or `![`, or a partial
    `sandbox:`), so no raw link ever reaches Slack; `feed` returns the text safe to show now. `rewrite`
    replaces the complete links (default: `scrub_sandbox_links`; the terminal points them at saved files).
    """

    def __init__(self, rewrite: Callable[[str], str] = scrub_sandbox_links) -> None:
        self._pending = ""
        self._rewrite = rewrite

    def feed(self, piece: str) -> str:
        self._pending += piece
        cut = _safe_prefix_length(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._rewrite(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return self._rewrite(ready)


_OPEN_LINK_TAIL = re.compile(r"\[[^\]\n]*(\]|\]\([^)\s]*)?$")


def _safe_prefix_length(text: str) -> int:
    """How much of `text` can be scrubbed and shown without cutting a possible link in two."""
    hold = len(text)
    bracket = text.rfind("[")
    if bracket != -1 and _OPEN_LINK_TAIL.match(text, bracket):
        hold = bracket - 1 if bracket > 0 and text[bracket - 1] == "!" else bracket
    if text.endswith("!"):
        hold = min(hold, len(text) - 1)
    # A partial "sandbox:" at the very end, or a bare sandbox path that may still grow.
    for size in range(min(len(text), 7), 0, -1):
        if text.endswith("sandbox:"[:size]):
            hold = min(hold, len(text) - size)
            break
    bare = text.rfind("sandbox:")
    if bare != -1 and not re.search(r"[\s)\]]", text[bare:]):
        hold = min(hold, bare)
    if len(text) - hold > _HOLD_BACK_LIMIT_CHARS:
        return len(text)
    return hold


def split_markdown(text: str, limit: int = SLACK_MARKDOWN_LIMIT_CHARS) -> list[str]:
    """Split `text` into pieces of at most `limit` characters.

    Prefers paragraph boundaries, then line boundaries; a fenced code block that must be split
    is closed at the end of one piece and reopened at the start of the next.
    """
    if len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit - 4]  # room to close a fence
        cut = window.rfind("\n\n")
        if cut < len(window) // 2:
            cut = window.rfind("\n")
        if cut < len(window) // 4:
            cut = len(window)
        piece, rest = rest[:cut], rest[cut:]
        rest = rest[2:] if rest.startswith("\n\n") else rest[1:] if rest.startswith("\n") else rest
        fence = _open_fence(piece)
        if fence is not None:
            piece += "\n```"
            rest = f"{fence}\n{rest}"
        pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


def fit_to_message(current: str, text: str, limit: int = SLACK_MARKDOWN_LIMIT_CHARS) -> tuple[str, list[str]]:
    """Place `text` after a message that already shows `current`.

    Returns `(head, new_messages)`: `head` is appended to the current message, `new_messages` each
    start a new message. When `text` does not fit, the current message ends at the last paragraph
    break that fits outside a code block (so tables and code stay whole); a code block that is open
    at the break is closed there and reopened in the next message.
    """
    if len(current) + len(text) <= limit:
        return text, []
    room = limit - len(current) - 4  # keep room to close a fence
    cut = 0
    for match in re.finditer(r"\n\n", text):
        if match.start() > room:
            break
        if _open_fence(current + text[: match.start()]) is None:
            cut = match.start()
    head, rest = text[:cut], text[cut:].lstrip("\n")
    fence = _open_fence(current + head)
    if fence is not None:
        head += "\n```"
        rest = f"{fence}\n{rest}"
    return head, split_markdown(rest, limit)


def _open_fence(text: str) -> str | None:
    """The opening fence line if `text` ends inside a fenced code block."""
    opening: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            opening = None if opening is not None else stripped
    return opening
