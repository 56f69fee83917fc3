"""Stage 1 of a turn: the turn's files (and, once, those shared in the thread earlier) into OpenAI."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import Session, SharedFile, Turn
from bot.errors import FileProblem, ThreadFileLimit
from bot.i18n import Language, t
from bot.ops import metrics
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


@dataclass
class Brought:
    """What `FilesIn.bring` did with a turn's files.

    `new_ids`: Slack ids of files new in the container this turn; `offered`: files looked at this turn
    (not already in the thread); `refused`: how many of those were refused (each reported in the thread);
    `uploaded_bytes`: what was sent to OpenAI's Files API (a file shared again is not sent again).
    """

    new_ids: set[str] = field(default_factory=set)
    offered: int = 0
    refused: int = 0
    uploaded_bytes: int = 0

    @property
    def nothing_readable(self) -> bool:
        """True when the turn brought files and every one of them was refused."""
        return self.offered > 0 and self.refused == self.offered


def upload_name(name: str, taken: set[str]) -> str:
    """The name a file is uploaded (and placed in the container) under: `name`, or, when the thread already
    holds a different file of that name, `stem (2).ext`, `stem (3).ext`, … (the first free one)."""
    if name not in taken:
        return name
    path = PurePosixPath(name)
    stem, suffix = (path.stem, path.suffix) if path.stem else (name, "")
    number = 2
    while (candidate := f"{stem} ({number}){suffix}") in taken:
        number += 1
    return candidate


def provenance(shared: SharedFile, *, renamed: bool) -> str:
    """Where a file came from, for the model: its original name, who shared it and in which message."""
    text = f"shared as `{shared.file.name}` by <@{shared.user_id}> in Slack message {shared.message_ts}"
    if renamed:
        text += " (renamed: the thread already has another file of this name)"
    return text


class FilesIn:
    """Brings a turn's files into the thread's OpenAI files, within the thread's limits."""

    def __init__(self, *, store: Store, intake: Intake, limits: ThreadLimits) -> None:
        self._store = store
        self._intake = intake
        self._limits = limits

    async def bring(
        self, turn: Turn, session: Session, reply: ThreadReply, lang: Language, *, slack: AsyncWebClient
    ) -> Brought:
        """Upload the turn's new files and report each refused one in the thread.

        `slack` is the client of the turn's workspace: it reads the thread and downloads the files.

        A file whose name another file of the thread already has is uploaded under `upload_name`, so
        both reach the container under distinct paths.
        """
        candidates = [SharedFile(f, message_ts=turn.ts, user_id=turn.user_id) for f in turn.files]
        if turn.is_thread_reply and not session.root_checked:
            earlier = await earlier_thread_files(slack, turn.thread, before_ts=turn.ts)
            candidates = [*earlier, *candidates]
            await self._store.update_session(turn.thread, root_checked=True)
        existing = await self._store.thread_files(turn.thread)
        known_ids = {f.slack_file_id for f in existing}
        by_digest = {f.sha256: f for f in existing if f.sha256}
        uploaded = {f.openai_file_id: f.size_bytes for f in existing}  # duplicates share one upload
        count, total_bytes = len(uploaded), sum(uploaded.values())
        names = {f.filename for f in existing}
        result = Brought()
        for shared in candidates:
            file = shared.file
            if file.id in known_ids:
                continue
            known_ids.add(file.id)
            result.offered += 1
            await reply.set_status(t("status.reading_files", lang, filename=file.name))
            try:
                if count >= self._limits.max_files or total_bytes + (file.size or 0) > self._limits.max_bytes:
                    raise ThreadFileLimit(
                        file.name,
                        f"{count} files, {total_bytes} bytes in thread",
                        max_files=str(self._limits.max_files),
                        max_mb=str(self._limits.max_bytes // 1_048_576),
                    )
                file = await self._intake.resolve(file, slack=slack)  # a stub's name is known only after files.info
                shared = replace(shared, file=file)
                name = upload_name(file.name, names)
                brought, duplicate = await self._intake.bring(file, slack=slack, known=by_digest, upload_name=name)
            except FileProblem as problem:
                log.warning("file %s (%s) refused: %s", file.id, problem.filename, problem.detail)
                metrics.current().files.labels(result="refused_" + problem.message_key.removeprefix("file.")).inc()
                await reply.notice(t(problem.message_key, lang, **problem.params))
                result.refused += 1
                continue
            if not duplicate:
                origin = provenance(shared, renamed=name != file.name)
                brought = replace(brought, description=f"{origin}; {brought.description}")
            await self._store.add_thread_file(turn.thread, brought)
            metrics.current().files.labels(result="taken").inc()
            if not duplicate:
                result.new_ids.add(file.id)
                result.uploaded_bytes += brought.size_bytes
                by_digest[brought.sha256] = brought
                names.add(brought.filename)
                count += 1
                total_bytes += brought.size_bytes
        return result
