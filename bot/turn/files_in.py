"""Stage 1 of a turn: the turn's files (and, once, those shared in the thread earlier) into OpenAI."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import Session, SlackFile, Turn
from bot.errors import FileProblem, ThreadFileLimit
from bot.i18n import Language, t
from bot.slack.history import earlier_thread_files
from bot.slack.reply import ThreadReply
from bot.store import Store
from bot.turn.intake import Intake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadLimits:
    """How much one thread may hold."""

    max_files: int = 20
    max_bytes: int = 2048 * 1_048_576


class FilesIn:
    """Brings a turn's files into the thread's OpenAI files, within the thread's limits."""

    def __init__(self, *, store: Store, slack: AsyncWebClient, intake: Intake, limits: ThreadLimits) -> None:
        self._store = store
        self._slack = slack
        self._intake = intake
        self._limits = limits

    async def bring(self, turn: Turn, session: Session, reply: ThreadReply, lang: Language) -> set[str]:
        """Upload the turn's new files and report each refused one in the thread.

        Returns the Slack ids of files that are new in the container this turn.
        """
        candidates: list[SlackFile] = list(turn.files)
        if turn.is_thread_reply and not session.root_checked:
            earlier = await earlier_thread_files(self._slack, turn.thread, before_ts=turn.ts)
            candidates = [*earlier, *candidates]
            await self._store.update_session(turn.thread, root_checked=True)
        existing = await self._store.thread_files(turn.thread)
        known_ids = {f.slack_file_id for f in existing}
        by_digest = {f.sha256: f for f in existing if f.sha256}
        uploaded = {f.openai_file_id: f.size_bytes for f in existing}  # duplicates share one upload
        count, total_bytes = len(uploaded), sum(uploaded.values())
        new_ids: set[str] = set()
        for file in candidates:
            if file.id in known_ids:
                continue
            known_ids.add(file.id)
            await reply.set_status(t("status.reading_files", lang, filename=file.name))
            try:
                if count >= self._limits.max_files or total_bytes + (file.size or 0) > self._limits.max_bytes:
                    raise ThreadFileLimit(
                        file.name,
                        f"{count} files, {total_bytes} bytes in thread",
                        max_files=str(self._limits.max_files),
                        max_mb=str(self._limits.max_bytes // 1_048_576),
                    )
                brought, duplicate = await self._intake.bring(file, known=by_digest)
            except FileProblem as problem:
                log.warning("file %s (%s) refused: %s", file.id, problem.filename, problem.detail)
                await reply.notice(t(problem.message_key, lang, **problem.params))
                continue
            await self._store.add_thread_file(turn.thread, brought)
            if not duplicate:
                new_ids.add(file.id)
                by_digest[brought.sha256] = brought
                count += 1
                total_bytes += brought.size_bytes
        return new_ids
