"""Runs turns: one at a time per Slack thread, in arrival order; different threads concurrently.

With a `ThreadGate` (several processes on PostgreSQL, `bot.store.replicas`) a thread's worker first takes
the thread's lock shared by all processes and runs the turns the gate hands it, in their order, however
many processes accepted them; without the lock it leaves the thread to the process that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

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


class ThreadGate(Protocol):
    """Per-thread order across processes: a lock per thread and the turns its holder may run."""

    async def acquire(self, thread: ThreadKey) -> bool:
        """Take the thread's lock if no other process holds it; True when taken."""

    async def adopt(self, thread: ThreadKey) -> list[Turn]:
        """Claim (for this process) the thread's turns that may run now, oldest message first."""

    async def release(self, thread: ThreadKey) -> bool:
        """Let go of the lock; True when turns of the thread are left that the caller should try again."""


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
        gate: ThreadGate | None = None,
        on_queued: OnQueued | None = None,
        on_slot_wait: OnSlotWait | None = None,
    ) -> None:
        self._run_turn = run_turn
        self._gate = gate
        self._on_queued = on_queued
        self._on_slot_wait = on_slot_wait
        self._slot_waiters = 0
        self._queues: dict[ThreadKey, deque[Turn]] = {}
        self._workers: dict[ThreadKey, asyncio.Task[None]] = {}
        self._stops: dict[ThreadKey, StopSignal] = {}
        self._running: dict[ThreadKey, int] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._in_progress = 0
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def accepting(self) -> bool:
        return not self._closing

    @property
    def running_count(self) -> int:
        """Turns running now (holding one of the `max_concurrent` slots)."""
        return self._in_progress

    @property
    def waiting_count(self) -> int:
        """Turns queued and not running: behind another turn of their thread, or waiting for a slot."""
        return sum(len(queue) for queue in self._queues.values()) - self._in_progress

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
        self._start_worker(turn.thread)

    def wake(self, thread: ThreadKey) -> None:
        """With a gate: look for the thread's turns (accepted by any process) and run them if its lock is free."""
        if self._closing or self._gate is None:
            return
        self._queues.setdefault(thread, deque())
        self._start_worker(thread)

    def _start_worker(self, thread: ThreadKey) -> None:
        if thread not in self._workers:
            self._idle.clear()
            drain = self._drain if self._gate is None else self._drain_gated
            self._workers[thread] = asyncio.create_task(
                drain(thread), name=f"thread-{thread.channel}-{thread.thread_ts}"
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

    async def _run_first(self, thread: ThreadKey, queue: deque[Turn]) -> None:
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
            self._in_progress += 1
            try:
                await self._run_turn(turn, stop)
            finally:
                self._in_progress -= 1
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

    async def _drain(self, thread: ThreadKey) -> None:
        queue = self._queues[thread]
        try:
            while queue and not self._closing:
                await self._run_first(thread, queue)
        finally:
            self._finish_worker(thread, queue)

    async def _drain_gated(self, thread: ThreadKey) -> None:
        """Hold the thread's lock while running what the gate hands over; leave the thread to its holder."""
        assert self._gate is not None
        queue = self._queues[thread]
        try:
            again, empty_rounds = True, 0
            # A round that found nothing to run (the thread's oldest turn runs elsewhere) is tried once
            # more, then left to the next wake-up or poll instead of spinning.
            while again and empty_rounds < 2 and not self._closing:
                if not await self._gate.acquire(thread):
                    queue.clear()  # the holder adopts them (they are in the database)
                    return
                ran = False
                try:
                    while not self._closing:
                        adopted = await self._gate.adopt(thread)
                        queue.clear()
                        queue.extend(adopted)
                        if not queue:
                            break
                        ran = True
                        await self._run_first(thread, queue)
                finally:
                    again = await asyncio.shield(self._gate.release(thread))
                empty_rounds = 0 if ran else empty_rounds + 1
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup: the turns stay unfinished, the next wake-up or poll retries
            log.exception("running the turns of %s across processes failed", thread)
            queue.clear()
        finally:
            self._finish_worker(thread, queue)

    def _finish_worker(self, thread: ThreadKey, queue: deque[Turn]) -> None:
        self._workers.pop(thread, None)
        if queue and self._gate is not None and not self._closing:
            # Submitted while this worker was letting go of the thread: look again.
            self._start_worker(thread)
            return
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
