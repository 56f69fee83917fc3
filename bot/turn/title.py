"""A short title for an assistant-pane thread, from its first question."""

from __future__ import annotations

from bot.domain import Session, Turn
from bot.slack.reply import ThreadReply

THREAD_TITLE_MAX_CHARS = 60


def thread_title(question: str) -> str:
    """The question's first non-empty line, white space collapsed, cut to `THREAD_TITLE_MAX_CHARS`."""
    line = next((" ".join(line.split()) for line in question.splitlines() if line.strip()), "")
    if len(line) > THREAD_TITLE_MAX_CHARS:
        line = line[: THREAD_TITLE_MAX_CHARS - 1].rstrip() + "…"
    return line


async def name_thread(turn: Turn, session: Session, reply: ThreadReply) -> None:
    """Title the thread from `turn` when it is the thread's first question in the assistant pane.

    Slack shows titles only for assistant (DM split-view) threads, whose questions are replies under the
    pane's own root message; a channel thread gets no call. A file shared without words gets no title.
    """
    is_pane_thread = turn.thread.channel.startswith("D") and turn.is_thread_reply
    if not is_pane_thread or session.conversation_id is not None:
        return
    if title := thread_title(turn.question):
        await reply.set_title(title)
