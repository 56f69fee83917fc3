"""`forget` in a Slack thread: stop the running turn, delete the thread's data, confirm with the counts.

Runs off the acknowledgement path, on tasks owned here (`close()` awaits or cancels them), like
`bot.slack.notices`: a forget calls OpenAI several times and must not hold Slack's 3-second ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.domain import ThreadKey
from bot.governance.retention import Deleted, Forgetter
from bot.i18n import Language, t
from bot.slack.notices import ThreadNotices
from bot.tasks import OwnedTasks
from bot.turn.scheduler import TurnScheduler

log = logging.getLogger(__name__)

# How long a forget waits for the thread's stopped turn to wind down before deleting anyway.
STOP_WAIT_S = 30.0


def confirmation(deleted: Deleted, lang: Language) -> str:
    """The thread's confirmation: what was deleted, and whether something is left for the next sweep."""
    text = t(
        "forget.done",
        lang,
        files=deleted.files,
        conversations=deleted.conversations,
        containers=deleted.containers,
        responses=deleted.responses,
    )
    if deleted.failed:
        text += " " + t("forget.partial", lang, left=deleted.failed)
    return text


class ThreadForget:
    """`request(thread, lang, addressed)` starts a forget for the thread and returns at once."""

    def __init__(
        self,
        *,
        forgetter: Forgetter,
        scheduler: TurnScheduler,
        notices: ThreadNotices,
        stop_elsewhere: Callable[[ThreadKey], Awaitable[bool]] | None = None,
    ) -> None:
        """`stop_elsewhere(thread)` (replicas) stops the thread's turn when another process runs it."""
        self._forgetter = forgetter
        self._stop_elsewhere = stop_elsewhere
        self._scheduler = scheduler
        self._notices = notices
        self._tasks = OwnedTasks()
        self._locks: dict[ThreadKey, asyncio.Lock] = {}

    def request(self, thread: ThreadKey, lang: Language, *, addressed: bool) -> None:
        """Forget `thread` in the background. `addressed` (a mention or a DM): say so when there is
        nothing to forget; an unaddressed `forget` in a thread that is not the bot's gets no answer."""
        self._tasks.spawn(self._forget(thread, lang, addressed), name=f"forget-{thread.channel}")

    async def _forget(self, thread: ThreadKey, lang: Language, addressed: bool) -> None:
        # Two forgets of one thread run one after the other: the second finds nothing left.
        lock = self._locks.setdefault(thread, asyncio.Lock())
        try:
            async with lock:
                await self._forget_now(thread, lang, addressed)
        finally:
            if not lock.locked():
                self._locks.pop(thread, None)

    async def _forget_now(self, thread: ThreadKey, lang: Language, addressed: bool) -> None:
        try:
            if await self._scheduler.clear(thread, timeout_s=STOP_WAIT_S):
                log.info("forget in %s: stopped its turn(s)", thread)
            elif self._stop_elsewhere is not None and await self._stop_elsewhere(thread):
                # Its turns are recorded as forgotten below, so the other replica starts none of them;
                # the running one stops when the notification reaches it.
                log.info("forget in %s: asked the replica running its turn to stop", thread)
            deleted = await self._forgetter.forget(thread, reason="forget")
        except Exception:  # the database or OpenAI failed outright: say so; queued deletions are retried
            log.exception("forget in %s failed", thread)
            self._notices.post(thread, t("forget.failed", lang))
            return
        if deleted is None:
            if addressed:
                self._notices.post(thread, t("forget.nothing", lang))
            return
        self._notices.post(thread, confirmation(deleted, lang))

    async def forget_team(self, team_id: str) -> Deleted:
        """Forget every thread of workspace `team_id` (the app was uninstalled there): stop its turns, delete
        its data at OpenAI and its rows, tombstones with reason "uninstalled". Nothing is posted in Slack
        (the workspace's token is gone). Returns what was deleted, summed over the threads."""
        total = Deleted()
        for thread in await self._forgetter.team_threads(team_id):
            await self._scheduler.clear(thread, timeout_s=STOP_WAIT_S)
            lock = self._locks.setdefault(thread, asyncio.Lock())
            async with lock:
                deleted = await self._forgetter.forget(thread, reason="uninstalled")
            if not lock.locked():
                self._locks.pop(thread, None)
            if deleted is not None:
                total.threads += deleted.threads
                total.deleted.update(deleted.deleted)
                total.failed += deleted.failed
        log.info(
            "forgot workspace %s: %d thread(s); %d file(s), %d conversation(s), %d container(s), %d response(s); "
            "%d left to retry",
            team_id,
            total.threads,
            total.files,
            total.conversations,
            total.containers,
            total.responses,
            total.failed,
        )
        return total

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Let forgets in flight finish for `grace_s`, then cancel the rest (their deletions stay queued)."""
        await self._tasks.close(grace_s=grace_s)
