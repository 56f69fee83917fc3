"""Where a turn's answer goes: a Slack thread (`bot.slack.reply.ThreadReply`) or a terminal
(`bot.terminal.ask`). The answer and output stages write to this, not to either one."""

from __future__ import annotations

from typing import Any, Protocol


class AnswerSink(Protocol):
    """What `stream_answer` and `OutputDelivery` need from the place the answer is shown."""

    @property
    def has_text(self) -> bool:
        """True once any answer text was shown."""

    async def write(self, text: str) -> None:
        """Show the next piece of the answer's text."""

    async def flush(self) -> None:
        """Show any text held back so far (before a progress line or the files)."""

    async def set_status(self, status: str) -> None:
        """Show what the analysis is doing now ("" clears it). Text held back may stay held."""

    async def step(self, step_id: str, title: str, *, status: str) -> bool:
        """Show one code step as `status` (in_progress | complete | error), after any text held back so far;
        False when steps cannot be shown (the caller then shows the status line instead, and the text is
        still held)."""

    async def upload(self, *, filename: str, data: bytes, title: str) -> None:
        """Deliver a file the model made."""

    async def post_blocks(self, *, text: str, blocks: list[dict[str, Any]]) -> object:
        """Show a native chart (`blocks`), with `text` where blocks cannot be shown; raises `SlackProblem`."""

    async def notice(self, text: str) -> None:
        """Show `text` on its own, outside the answer."""
