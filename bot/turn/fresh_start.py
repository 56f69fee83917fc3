"""The first turn of a session in a thread whose data was deleted says so before answering.

A person replying in a thread that retention or `forget` emptied must not get an answer from a model
that silently forgot the thread: they are told why it starts afresh and to share the file again.
"""

from __future__ import annotations

from bot.domain import Session
from bot.i18n import Language, t
from bot.slack.reply import ThreadReply
from bot.store.retention import RetentionStore


def format_days(days: float) -> str:
    """`30.0` -> "30", `0.5` -> "0.5" (RETENTION_DAYS is a decimal number)."""
    return f"{days:g}"


async def announce_fresh_start(
    session: Session, *, retention: RetentionStore, reply: ThreadReply, lang: Language
) -> None:
    """Post the "deleted after N days / on request" notice once, on the fresh session's first turn.

    Costs one indexed update, and only while the session has no conversation yet (its first turn).
    """
    if session.conversation_id is not None:
        return
    tombstone = await retention.take_tombstone_notice(session.thread)
    if tombstone is None:
        return
    if tombstone.reason == "retention" and tombstone.idle_days is not None:
        await reply.notice(t("retention.swept", lang, days=format_days(tombstone.idle_days)))
    else:
        await reply.notice(t("retention.forgotten", lang))
