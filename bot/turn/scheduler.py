"""Runs turns: one at a time per Slack thread, in arrival order; different threads concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from bot.domain import ThreadKey, Turn

log = logging.getLogger(__name__)


class StopSignal(asyncio.Event):
    """Set to stop a running turn; `reason` says why: the user asked, or this process lost the turn's claim."""

    reason: str = "user"


RunTurn = Callable[[Turn, StopSignal], Awaitable[None]]
# A turn queued behind earlier turns of its thread, with how many are ahead (called at once, must not
# block); a turn waiting for one of the `max_concurrent` slots, with its place in that line (1 = next;
# awaited before it waits, so what it shows comes before the turn's own status).
OnQueued = Callable[[Turn, int], None]
OnSlotWait = Callable[[Turn, int], Awaitable[None]]


class TurnScheduler:
    """Owns one worker task per busy thread; each worker drains its thread's queue in order.

    `run_turn(turn, stop)` must not raise for ordinary failures (it reports them itself); anything it
    does raise is logged and the worker moves on to the next turn. `stop` is set when the user asks to
    stop the running turn of that thread.
    """

    def __init__(
        self,
        run_turn: RunTurn,
        *,
        max_concurrent: int = 16,
        on_queued: OnQueued | None = None,
        on_slot_wait: OnSlotWait | None = None,
    ) -> None:
        self._run_turn = run_turn
        self._on_queued = on_queued
        self._on_slot_wait = on_slot_wait
        self._slot_waiters = 0
        self._queues: dict[ThreadKey, deque[Turn]] = {}
        self._workers: dict[ThreadKey, asyncio.Task[None]] = {}
        self._stops: dict[ThreadKey, StopSignal] = {}
        self._running: dict[ThreadKey, int] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def accepting(self) -> bool:
        return not self._closing

    def submit(self, turn: Turn) -> None:
        """Queue `turn` behind earlier turns of its thread. Ignored once `close()` started."""
        if self._closing:
            return
        queue = self._queues.setdefault(turn.thread, deque())
        if any(queued.id == turn.id for queued in queue):
            return
        queue.append(turn)
        if len(queue) > 1 and self._on_queued is not None:
            self._on_queued(turn, len(queue) - 1)
        if turn.thread not in self._workers:
            self._idle.clear()
            self._workers[turn.thread] = asyncio.create_task(
                self._drain(turn.thread), name=f"thread-{turn.thread.channel}-{turn.thread.thread_ts}"
            )

    def stop(self, thread: ThreadKey) -> bool:
        """Ask the thread's current turn (running, or waiting for a free slot) to stop; False if none."""
        event = self._stops.get(thread)
        if event is None or event.is_set():
            return False
        event.set()
        return True

    async def clear(self, thread: ThreadKey, *, timeout_s: float = 30.0) -> bool:
        """Drop the thread's queued turns, stop its running one and wait (up to `timeout_s`) until it ended.

        Returns True if a turn was running or queued. The dropped turns stay unfinished in the store;
        the caller finishes them there (a forget does), or another claim picks them up.
        """
        queue = self._queues.get(thread)
        worker = self._workers.get(thread)
        if not queue and worker is None:
            return False
        if queue:
            running = self._running.get(thread)
            for turn in [t for t in queue if t.id != running]:
                queue.remove(turn)
        self.stop(thread)
        if worker is not None:
            await asyncio.wait({worker}, timeout=timeout_s)
        return True

    def held_turn_ids(self) -> set[int]:
        """The turns this scheduler has queued or running (whose claims this process must keep)."""
        return {turn.id for queue in self._queues.values() for turn in queue}

    def abandon(self, turn_ids: set[int]) -> None:
        """Drop turns this process no longer owns: queued ones are removed, running ones stopped quietly."""
        for thread, queue in list(self._queues.items()):
            running = self._running.get(thread)
            for turn in [t for t in queue if t.id in turn_ids]:
                if turn.id == running:
                    event = self._stops.get(thread)
                    if event is not None and not event.is_set():
                        event.reason = "lost_claim"
                        event.set()
                else:
                    queue.remove(turn)

    async def _drain(self, thread: ThreadKey) -> None:
        queue = self._queues[thread]
        try:
            while queue and not self._closing:
                turn = queue[0]
                # Made before waiting for a slot: a stop while the turn waits for one stops it too.
                stop = self._stops[thread] = StopSignal()
                self._running[thread] = turn.id
                try:
                    if self._slots.locked() and self._on_slot_wait is not None:
                        await self._on_slot_wait(turn, self._slot_waiters + 1)
                    self._slot_waiters += 1
                    try:
                        await self._slots.acquire()
                    finally:
                        self._slot_waiters -= 1
                    try:
                        await self._run_turn(turn, stop)
                    finally:
                        self._slots.release()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("turn %s crashed", turn.id)
                finally:
                    self._stops.pop(thread, None)
                    self._running.pop(thread, None)
                if queue and queue[0] is turn:
                    queue.popleft()
        finally:
            self._workers.pop(thread, None)
            if not queue:
                self._queues.pop(thread, None)
            if not self._workers:
                self._idle.set()

    async def wait_idle(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until no turn is queued or running; True if that happened within `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, *, grace_s: float) -> None:
        """Stop taking turns; let running ones finish for `grace_s`, then cancel the rest.

        Turns not finished stay unfinished in the store and are picked up after the next start.
        """
        self._closing = True
        workers = list(self._workers.values())
        if not workers:
            return
        _done, still_running = await asyncio.wait(workers, timeout=grace_s)
        for task in still_running:
            task.cancel()
        for task in still_running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
