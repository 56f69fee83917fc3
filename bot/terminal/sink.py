"""The terminal as an answer's destination: text to stdout as it streams, progress to stderr, files to a folder."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, TextIO

from bot.slack.render import StreamScrubber

_SANDBOX_IMAGE_OR_LINK = re.compile(r"!?\[([^\]\n]*)\]\(sandbox:([^)\s]*)\)")
_SANDBOX_BARE = re.compile(r"sandbox:(?:/mnt/data/)?([^\s)\]]+)")


def local_links(text: str, *, out_dir: Path) -> str:
    """`[label](sandbox:/mnt/data/x.png)` -> `label (OUT/x.png)`, a bare `sandbox:/mnt/data/x.png` ->
    `OUT/x.png`: the model's links name the files where `TerminalSink.upload` saves them."""

    def linked(match: re.Match[str]) -> str:
        path = out_dir / match.group(2).rsplit("/", 1)[-1]
        label = match.group(1).strip()
        return f"{label} ({path})" if label else str(path)

    text = _SANDBOX_IMAGE_OR_LINK.sub(linked, text)
    return _SANDBOX_BARE.sub(lambda m: str(out_dir / m.group(1).rsplit("/", 1)[-1]), text)


class TerminalSink:
    """An `AnswerSink` for a terminal. Files are saved as `out_dir/<name>` (a later file of the same name
    replaces the earlier one, as the model's own rewrite of a file does); `saved` lists them in order."""

    def __init__(self, *, stdout: TextIO, stderr: TextIO, out_dir: Path) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._out_dir = out_dir
        self._scrubber = StreamScrubber(lambda text: local_links(text, out_dir=out_dir))
        self._midline = False
        self.saved: list[Path] = []
        self.has_text = False

    def begin(self) -> None:
        """Start the next answer: `has_text` and `saved` then describe that answer only."""
        self.saved = []
        self.has_text = False

    def _show(self, text: str) -> None:
        if text:
            self._stdout.write(text)
            self._stdout.flush()
            self._midline = not text.endswith("\n")
            self.has_text = True

    async def write(self, text: str) -> None:
        self._show(self._scrubber.feed(text))

    async def flush(self) -> None:
        self._show(self._scrubber.flush())

    def end_answer(self) -> None:
        """End the answer's last line (so what follows starts on its own line)."""
        if self._midline:
            self._show("\n")

    async def set_status(self, status: str) -> None:
        if not status:
            return
        if self._midline and _same_terminal(self._stdout, self._stderr):
            self.end_answer()
        # The English statuses follow the app's name in Slack ("… is running Python…").
        self.line(status.removeprefix("is "))

    async def step(self, step_id: str, title: str, *, status: str) -> bool:
        """A code step as a progress line on stderr when it starts (its end needs no line), after the text
        held back so far."""
        await self.flush()
        if status == "in_progress":
            await self.set_status(f"▸ {title}")
        elif status == "error":
            await self.set_status(f"✗ {title}")
        return True

    async def post_blocks(self, *, text: str, blocks: list[dict[str, Any]]) -> None:
        """A native Slack chart: a terminal shows its data as the Markdown table of `text`."""
        await self.notice(text)

    async def notice(self, text: str) -> None:
        self.end_answer()
        self._show(text.rstrip("\n") + "\n")

    def line(self, text: str) -> None:
        """One line on stderr (progress, notes, errors)."""
        self._stderr.write(text + "\n")
        self._stderr.flush()

    async def upload(self, *, filename: str, data: bytes, title: str) -> None:
        path = self._out_dir / Path(filename).name
        await asyncio.to_thread(_write, path, data)
        if path in self.saved:
            self.saved.remove(path)
        self.saved.append(path)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _same_terminal(out: TextIO, err: TextIO) -> bool:
    try:
        return out.isatty() and err.isatty()
    except ValueError:  # a closed stream
        return False
