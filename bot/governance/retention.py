"""Deletes threads' data at OpenAI and in the database: the retention sweep and `forget` share `Forgetter`.

For one thread that is: its uploaded files (unless another thread uses the same upload), its code
interpreter container, its conversation (items first) and its stored responses, then its rows, leaving a
tombstone (`bot.store.retention` explains why the rows go first). OpenAI's 404 counts as deleted; any
other failure is logged and the object stays queued for the next sweep; nothing here raises for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from bot.analysis.workspace import Workspace
from bot.domain import ThreadKey
from bot.errors import BotError
from bot.store.retention import Deletion, RetentionStore

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
# OpenAI calls in flight at once during a sweep (bounded: OpenAI rate-limits, and the bot keeps answering).
SWEEP_CONCURRENCY = 8
DELETIONS_PER_CLAIM = 200


@dataclass
class Deleted:
    """What a sweep or a forget removed at OpenAI (`deleted`, by kind; 404s included) and what is left."""

    threads: int = 0
    deleted: Counter[str] = field(default_factory=Counter)
    failed: int = 0

    @property
    def files(self) -> int:
        return self.deleted["file"]

    @property
    def conversations(self) -> int:
        return self.deleted["conversation"]

    @property
    def containers(self) -> int:
        return self.deleted["container"]

    @property
    def responses(self) -> int:
        return self.deleted["response"]


class Forgetter:
    """Forgets threads: `forget(thread)` for one, `sweep(days)` for every thread idle that long."""

    def __init__(
        self,
        *,
        store: RetentionStore,
        workspace: Workspace,
        concurrency: int = SWEEP_CONCURRENCY,
    ) -> None:
        self._store = store
        self._workspace = workspace
        self._slots = asyncio.Semaphore(concurrency)
        self._clock = store.now

    async def forget(self, thread: ThreadKey, *, reason: str = "forget") -> Deleted | None:
        """Delete `thread`'s data now; None when the bot has no session there (nothing is done then).

        Objects of the thread still queued from an earlier, failed attempt are retried too.
        """
        detached = await self._store.detach(thread, reason=reason)
        if not detached.threads and not await self._store.pending_deletions(thread):
            return None
        result = await self._drain(due_before=self._clock(), thread=thread)
        result.threads = len(detached.threads)
        log.info(
            "forgot %s: %d file(s), %d conversation(s), %d container(s), %d response(s); %d left to retry",
            thread,
            result.files,
            result.conversations,
            result.containers,
            result.responses,
            result.failed,
        )
        return result

    async def team_threads(self, team_id: str) -> list[ThreadKey]:
        """The threads of workspace `team_id` that have something to forget."""
        return await self._store.team_threads(team_id)

    async def sweep(self, retention_days: float) -> Deleted:
        """Forget every thread idle longer than `retention_days` (0: nothing), then retry what failed before.

        Threads with a pending or running turn are skipped. Returns what was deleted.
        """
        started = self._clock()
        result = Deleted()
        if retention_days > 0:
            cutoff = started - retention_days * SECONDS_PER_DAY
            while (detached := await self._store.detach_idle(cutoff, idle_days=retention_days)).threads:
                result.threads += len(detached.threads)
                # Drain as we go, so the queue (and a crash's leftovers) stay small.
                self._merge(result, await self._drain(due_before=started))
        self._merge(result, await self._drain(due_before=started))
        if result.threads or result.failed or sum(result.deleted.values()):
            log.info(
                "retention sweep: %d thread(s); deleted %d file(s), %d conversation(s), %d container(s), "
                "%d response(s); %d deletion(s) failed and wait for the next sweep (%.1fs)",
                result.threads,
                result.files,
                result.conversations,
                result.containers,
                result.responses,
                result.failed,
                self._clock() - started,
            )
        return result

    @staticmethod
    def _merge(into: Deleted, part: Deleted) -> None:
        into.deleted.update(part.deleted)
        into.failed += part.failed

    async def _drain(self, *, due_before: float, thread: ThreadKey | None = None) -> Deleted:
        """Delete the queued objects due before `due_before` (of `thread`, or all) at OpenAI."""
        result = Deleted()
        while batch := await self._store.claim_deletions(
            due_before=due_before, limit=DELETIONS_PER_CLAIM, thread=thread
        ):
            outcomes = await asyncio.gather(*(self._delete(d) for d in batch))
            done = [d for d, ok in zip(batch, outcomes, strict=True) if ok]
            await self._store.deletions_done([d.id for d in done])
            result.deleted.update(d.kind for d in done)
            result.failed += len(batch) - len(done)
        return result

    async def _delete(self, deletion: Deletion) -> bool:
        async with self._slots:
            try:
                deleted_now = await self._workspace.delete(deletion.kind, deletion.object_id)
            except BotError as err:
                log.warning(
                    "could not delete %s %s of %s at OpenAI: %s (request_id=%s); retried next sweep",
                    deletion.kind,
                    deletion.object_id,
                    deletion.thread,
                    err.detail,
                    err.request_id,
                )
                await self._store.deletion_failed(deletion.id, err.detail)
                return False
        if not deleted_now:
            log.debug("%s %s was already gone at OpenAI", deletion.kind, deletion.object_id)
        return True


class RetentionSweeper:
    """Runs `Forgetter.sweep` at start-up and every `interval_s` seconds until cancelled; never raises."""

    def __init__(self, forgetter: Forgetter, *, retention_days: float, interval_s: float) -> None:
        self.forgetter = forgetter
        self._days = retention_days
        self._interval_s = interval_s
        self.sweeps_done = 0
        self._swept = asyncio.Condition()

    async def wait_sweeps(self, count: int, *, timeout_s: float = 10.0) -> None:
        """Wait until `count` sweeps have finished since start-up (raises TimeoutError after `timeout_s`)."""
        async with asyncio.timeout(timeout_s), self._swept:
            await self._swept.wait_for(lambda: self.sweeps_done >= count)

    async def run(self) -> None:
        if self._days <= 0:
            log.info("RETENTION_DAYS=0: keeping every thread's data")
        while True:
            try:
                await self.forgetter.sweep(self._days)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database or network hiccup must not end the sweeper; the next round retries
                log.exception("retention sweep failed; retrying in %ss", self._interval_s)
            async with self._swept:
                self.sweeps_done += 1
                self._swept.notify_all()
            await asyncio.sleep(self._interval_s)
