"""Several processes on one PostgreSQL database: per-thread locks, turn hand-over, wake-ups and stops.

A process runs a thread's turns only while it holds the thread's advisory lock (`pg_try_advisory_lock`,
session level, on one dedicated connection): under it, the thread's unfinished turns are adopted (claimed
by this process) in the order of their Slack `ts` and run one at a time. A process that accepted a message
of a thread locked elsewhere leaves the turn to the holder, which adopts new turns before it lets go and
looks again after letting go. `kill -9` closes the dedicated connection, so the dead process's thread
locks are free at once; claims it held on running turns still expire only after `TURN_LEASE_S`.

`NOTIFY bot_turns` carries wake-ups (turns freed by a clean shutdown, a thread left with work) and stops
(a `stop` or `forget` that reached another replica); every process `LISTEN`s on the same connection.
SQLite never gets here: a single process orders turns in its own scheduler (`bot.turn.scheduler`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain import ThreadKey, Turn
from bot.store.store import UNFINISHED, Store, _turn_from_row
from bot.store.tables import turns

if TYPE_CHECKING:
    import asyncpg  # imported where a connection is made: a SQLite bot never loads it

log = logging.getLogger(__name__)

CHANNEL = "bot_turns"
# The first key of the two-key advisory lock: our thread locks never meet another application's.
LOCK_CLASS = 0x7E11

# on_notice(kind, thread): kind is "wake" or "stop"; thread None means "look at everything".
OnNotice = Callable[[str, ThreadKey | None], None]


def _ts_order(row: Any) -> tuple[Decimal, int]:
    try:
        return Decimal(row.ts), int(row.id)
    except InvalidOperation:
        return Decimal(0), int(row.id)


def _thread_where(thread: ThreadKey) -> tuple[sa.ColumnElement[bool], ...]:
    return (turns.c.team_id == thread.team_id, turns.c.channel == thread.channel, turns.c.thread_ts == thread.thread_ts)


def _lock_key(thread: ThreadKey) -> str:
    return f"{thread.team_id}:{thread.channel}:{thread.thread_ts}"


class ReplicaCoordinator:
    """The PostgreSQL side of running turns on several processes; `TurnScheduler`'s thread gate.

    Create with `await ReplicaCoordinator.open(store, on_notice=...)`; `close()` drops the dedicated
    connection (and with it every thread lock this process holds).
    """

    def __init__(
        self, store: Store, connection: asyncpg.Connection, *, dsn: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine: AsyncEngine = store.engine
        self._dsn = dsn
        self._closed = False
        self._owner = store.owner
        self._lease_s = store.lease_s
        self._clock = clock
        self._conn = connection
        self._conn_lock = asyncio.Lock()  # one asyncpg connection runs one command at a time
        self.on_notice: OnNotice | None = None

    @classmethod
    async def open(cls, store: Store, *, clock: Callable[[], float] = time.time) -> ReplicaCoordinator:
        import asyncpg

        dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        coordinator = cls(store, connection, dsn=dsn, clock=clock)
        await connection.add_listener(CHANNEL, coordinator._on_notification)
        return coordinator

    async def close(self) -> None:
        async with self._conn_lock:
            self._closed = True
            if not self._conn.is_closed():
                await self._conn.close()

    async def _connection(self) -> asyncpg.Connection:
        """The dedicated connection, opened again (and listening again) if the database dropped it.

        Call holding `_conn_lock`. The thread locks of the dropped connection are gone with it; the turns
        this process is running keep their claims, so no other process adopts them meanwhile. Raises the
        driver's error while the database is still away (the caller's next round tries again).
        """
        if self._conn.is_closed() and not self._closed:
            import asyncpg

            log.warning("the replica coordination connection to the database was lost; reconnecting")
            connection = await asyncpg.connect(self._dsn)
            await connection.add_listener(CHANNEL, self._on_notification)
            self._conn = connection
        return self._conn

    # ---- the thread gate (see `bot.turn.scheduler.ThreadGate`) ------------------------------------------

    async def acquire(self, thread: ThreadKey) -> bool:
        """Take the thread's lock unless another process holds it; True if this process now holds it."""
        async with self._conn_lock:
            conn = await self._connection()
            return bool(
                await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS, _lock_key(thread))
            )

    async def release(self, thread: ThreadKey) -> bool:
        """Let go of the thread's lock; True if the thread has turns left that some process should run
        (accepted while this one was letting go): the caller tries again, and other replicas are woken."""
        async with self._conn_lock:
            if not self._conn.is_closed():
                await self._conn.fetchval("SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_CLASS, _lock_key(thread))
        return thread in await self.threads_with_work(thread)

    async def adopt(self, thread: ThreadKey) -> list[Turn]:
        """Claim the thread's unfinished turns that may run now, in `ts` order; call only holding the lock.

        Under the lock no other process runs this thread, so pending turns are taken whoever accepted
        them. A turn another process is running with a live claim (it lost its lock connection, or took
        the turn over) blocks the turns after it: nothing is returned until it ends or its lease expires.
        """
        now = self._clock()
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(turns.c.id, turns.c.ts, turns.c.status, turns.c.owner, turns.c.lease_until)
                    .where(*_thread_where(thread), turns.c.status.in_(UNFINISHED))
                    .with_for_update()
                )
            ).all()
            runnable: list[int] = []
            for row in sorted(rows, key=_ts_order):
                if row.owner != self._owner and row.status != "pending" and float(row.lease_until) >= now:
                    break
                runnable.append(int(row.id))
            if not runnable:
                return []
            result = await conn.execute(
                sa.update(turns)
                .where(turns.c.id.in_(runnable))
                .values(owner=self._owner, lease_until=now + self._lease_s)
                .returning(*turns.c)
            )
            adopted = result.all()
        return [_turn_from_row(r) for r in sorted(adopted, key=_ts_order)]

    async def threads_with_work(self, thread: ThreadKey | None = None) -> list[ThreadKey]:
        """Threads (or just `thread`) with a turn that may be adopted: pending, or its claim ran out."""
        query = (
            sa.select(turns.c.team_id, turns.c.channel, turns.c.thread_ts)
            .where(
                turns.c.status.in_(UNFINISHED),
                sa.or_(turns.c.status == "pending", turns.c.lease_until < self._clock()),
            )
            .distinct()
        )
        if thread is not None:
            query = query.where(*_thread_where(thread))
        async with self._engine.connect() as conn:
            return [ThreadKey(*row) for row in await conn.execute(query)]

    # ---- wake-ups and stops ---------------------------------------------------------------------------

    async def has_unfinished(self, thread: ThreadKey) -> bool:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(turns.c.id).where(*_thread_where(thread), turns.c.status.in_(UNFINISHED)).limit(1)
                )
            ).first()
        return row is not None

    async def stop_elsewhere(self, thread: ThreadKey) -> bool:
        """Ask whichever process runs the thread's current turn to stop it; False if none is unfinished."""
        if not await self.has_unfinished(thread):
            return False
        await self.notify("stop", thread)
        return True

    async def notify(self, kind: str, thread: ThreadKey | None = None) -> None:
        """NOTIFY every process (this one too) of a `wake` or `stop` for `thread` (None: all threads)."""
        key = [thread.team_id, thread.channel, thread.thread_ts] if thread else None
        payload = json.dumps({"kind": kind, "thread": key})
        async with self._conn_lock:
            conn = await self._connection()
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            kind = str(message["kind"])
            thread = ThreadKey(*message["thread"]) if message.get("thread") else None
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed %s notification: %r", CHANNEL, payload[:200])
            return
        if self.on_notice is not None:
            self.on_notice(kind, thread)
