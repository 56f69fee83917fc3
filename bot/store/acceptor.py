"""Records incoming user messages as pending turns, exactly once, in group commits.

Slack must be acknowledged within 3 s, and only after the message is durable. When hundreds of
events arrive together, one transaction per event queues them behind each other (SQLite's file lock,
a small PostgreSQL pool). So concurrent calls are gathered by one writer task and committed
together: every caller still returns only after its own row is committed.

Measured under a burst of 400 deliveries (`bench.ack_latency`), a SQLite write through the async engine
was a dozen round trips between the event loop and aiosqlite's thread (cursor, statement, fetch and close
per statement, commit, the pool's reset), and each waited behind whatever the loop was doing, i.e. reading
the rest of the burst: a one-message write took 75 ms and the burst's other messages waited behind it. So on
SQLite the whole transaction runs in one hop, on a blocking engine of the same file in a thread of the
acceptor's own (not the shared default executor, where a file conversion could hold it for seconds). On
PostgreSQL the same code runs on the async engine (`run_sync`: asyncpg's round trips, on the loop).

While a burst is still arriving the writer waits for it (as long as messages keep coming `GATHER_QUIET_S`
apart or closer, up to `GATHER_MAX_S`), then writes it as one transaction (PostgreSQL's `commit_delay` is the
same idea). Callers are answered as soon as the transaction is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain import Incoming, ThreadKey, Turn
from bot.store.engine import sync_sqlite_engine

log = logging.getLogger(__name__)

MAX_BATCH = 500
# The writer waits while messages keep arriving this close together (a lone message waits this long once)...
GATHER_QUIET_S = 0.002
# ...but no longer than this in all, before it writes what it has.
GATHER_MAX_S = 0.1
# Keys of recently recorded messages, so Slack's duplicate deliveries skip the database.
REMEMBERED_KEYS = 20_000

MessageKey = tuple[str, str, str]  # team, channel, ts


class TurnAcceptor:
    """`accept(incoming)` -> the new `Turn`, or None for a duplicate or a message that is not ours."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        sessions: sa.Table,
        turns: sa.Table,
        participants: sa.Table,
        insert: Any,
        owner: str,
        lease_s: float,
        clock: Callable[[], float] = time.time,
        tombstoned: Callable[[Collection[ThreadKey]], Any] | None = None,
    ) -> None:
        """`tombstoned(threads)` builds the query for which of `threads` have a tombstone."""
        self._engine = engine
        # SQLite: a blocking engine on the same file, used from one thread of our own (see the module doc).
        self._sqlite = sync_sqlite_engine(engine)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn-acceptor") if self._sqlite else None
        self._tombstoned = tombstoned
        self._clock = clock
        self._owner = owner
        self._lease_s = lease_s
        self._sessions = sessions
        self._turns = turns
        self._participants = participants
        self._insert_session = insert(sessions).on_conflict_do_nothing()
        self._insert_participant = insert(participants).on_conflict_do_nothing()
        self._insert_turn = (
            insert(turns).on_conflict_do_nothing().returning(turns.c.id, turns.c.team_id, turns.c.channel, turns.c.ts)
        )
        self._queue: list[tuple[Incoming, asyncio.Future[Turn | None]]] = []
        self._inflight: dict[MessageKey, asyncio.Future[Turn | None]] = {}
        self._recent: OrderedDict[MessageKey, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def accept(self, incoming: Incoming) -> Turn | None:
        """Record `incoming` (durably) unless it was recorded before; see `Store.accept_message`."""
        key = (incoming.thread.team_id, incoming.thread.channel, incoming.ts)
        if key in self._recent:
            return None
        earlier = self._inflight.get(key)
        if earlier is not None:
            # The other delivery of the same message: acknowledge only once that one is durable.
            await asyncio.shield(earlier)
            return None
        future: asyncio.Future[Turn | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        self._queue.append((incoming, future))
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="turn-acceptor")
        return await asyncio.shield(future)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Finish queued writes (up to `timeout_s`) and stop the writer."""
        self._closing = True
        self._wake.set()
        if self._writer is not None and not self._writer.done():
            done, _ = await asyncio.wait({self._writer}, timeout=timeout_s)
            if not done:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
        for _incoming, future in self._queue:
            if not future.done():
                future.set_exception(RuntimeError("store closed"))
        if self._thread is not None:
            # Not waited for: a write still running there (its writer timed out) must not block the loop.
            self._thread.shutdown(wait=False, cancel_futures=True)
        if self._sqlite is not None:
            self._sqlite.dispose()

    async def _write_loop(self) -> None:
        while not (self._closing and not self._queue):
            await self._wake.wait()
            self._wake.clear()
            await self._gather()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._write(batch)
                except Exception as exc:
                    if any(not future.done() for _, future in batch):
                        log.exception("recording %d incoming message(s) failed", len(batch))
                    else:  # committed and answered; only giving the connection back failed
                        log.warning("releasing a database connection after recording failed: %s", exc)
                    for incoming, future in batch:
                        if not future.done():
                            self._inflight.pop(_key(incoming), None)
                            future.set_exception(exc)

    async def _gather(self) -> None:
        """Wait while messages keep arriving (`GATHER_QUIET_S` apart or closer), up to `GATHER_MAX_S` or
        `MAX_BATCH` messages."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATHER_MAX_S
        seen = -1
        while seen < len(self._queue) < MAX_BATCH and not self._closing and loop.time() < deadline:
            seen = len(self._queue)
            await asyncio.sleep(min(GATHER_QUIET_S, max(0.0, deadline - loop.time())))

    def _settle(
        self, batch: list[tuple[Incoming, asyncio.Future[Turn | None]]], results: dict[MessageKey, Turn]
    ) -> None:
        """Answer the callers of a committed batch."""
        for incoming, future in batch:
            key = _key(incoming)
            self._inflight.pop(key, None)
            self._remember(key)
            if not future.done():
                future.set_result(results.get(key))

    def _remember(self, key: MessageKey) -> None:
        self._recent[key] = None
        if len(self._recent) > REMEMBERED_KEYS:
            self._recent.popitem(last=False)

    async def _write(self, batch: list[tuple[Incoming, asyncio.Future[Turn | None]]]) -> None:
        """One transaction for the whole batch; its callers get their new turn (None: not new) once it is
        committed, before the connection is given back (SQLite's reset on return is one more round trip)."""
        incoming = [m for m, _ in batch]
        if self._sqlite is not None:
            loop = asyncio.get_running_loop()
            self._settle(batch, await loop.run_in_executor(self._thread, self._write_sqlite, self._sqlite, incoming))
            return
        async with self._engine.connect() as conn:
            async with conn.begin():
                results = await conn.run_sync(self._insert, incoming)
            self._settle(batch, results)

    def _write_sqlite(self, engine: sa.Engine, batch: list[Incoming]) -> dict[MessageKey, Turn]:
        with engine.begin() as conn:
            return self._insert(conn, batch)

    def _insert(self, conn: sa.Connection, batch: list[Incoming]) -> dict[MessageKey, Turn]:
        """Insert the batch's sessions, participants and turns; returns the turns that were new, by message key."""
        now = self._clock()
        by_key: dict[MessageKey, Incoming] = {}
        for incoming in batch:
            by_key.setdefault(_key(incoming), incoming)
        messages = list(by_key.values())
        starting: dict[ThreadKey, Incoming] = {}
        for m in messages:
            if m.starts_session:
                starting.setdefault(m.thread, m)
        others = {m.thread for m in messages if m.thread not in starting}
        known = set(starting)
        if others:
            columns = (self._sessions.c.team_id, self._sessions.c.channel, self._sessions.c.thread_ts)
            result = conn.execute(
                sa.select(*columns).where(
                    sa.tuple_(*columns).in_([(t.team_id, t.channel, t.thread_ts) for t in others])
                )
            )
            known |= {ThreadKey(*row) for row in result}
        # Threads whose data was deleted (retention, forget): a reply there starts a fresh session,
        # which does not pull the thread's earlier files back in (root_checked). One lookup, only for
        # replies in threads without a session and for mentions that reply in a thread.
        tombstoned: set[ThreadKey] = set()
        maybe = (others - known) | {t for t, m in starting.items() if m.is_thread_reply}
        if maybe and self._tombstoned is not None:
            tombstoned = {ThreadKey(*row) for row in conn.execute(self._tombstoned(maybe))}
            for m in messages:
                if m.thread in tombstoned:
                    starting.setdefault(m.thread, m)
            known |= tombstoned
        if starting:
            conn.execute(
                self._insert_session,
                [
                    {
                        "team_id": t.team_id,
                        "channel": t.channel,
                        "thread_ts": t.thread_ts,
                        "root_checked": not m.is_thread_reply or t in tombstoned,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for t, m in starting.items()
                ],
            )
        ours = [m for m in messages if m.thread in known]
        if any(m.requires_participant for m in ours):
            ours = self._from_participants(conn, ours)
        if not ours:
            return {}
        speakers = {(m.thread, m.user_id) for m in ours if m.starts_session}
        if speakers:
            conn.execute(
                self._insert_participant,
                [
                    {"team_id": t.team_id, "channel": t.channel, "thread_ts": t.thread_ts, "user_id": user}
                    for t, user in sorted(speakers)
                ],
            )
        result = conn.execute(
            self._insert_turn,
            [
                {
                    "team_id": m.thread.team_id,
                    "channel": m.thread.channel,
                    "ts": m.ts,
                    "thread_ts": m.thread.thread_ts,
                    "user_id": m.user_id,
                    "text": m.text,
                    "files_json": json.dumps([f.to_json() for f in m.files]),
                    "is_thread_reply": m.is_thread_reply,
                    "status": "pending",
                    "attempts": 0,
                    "owner": self._owner,
                    "lease_until": now + self._lease_s,
                    "created_at": now,
                    "updated_at": now,
                }
                for m in ours
            ],
        )
        ids = {(row.team_id, row.channel, row.ts): int(row.id) for row in result}
        return {
            key: Turn(
                id=ids[key],
                thread=m.thread,
                ts=m.ts,
                user_id=m.user_id,
                text=m.text,
                files=m.files,
                is_thread_reply=m.is_thread_reply,
            )
            for m in ours
            if (key := _key(m)) in ids
        }

    def _from_participants(self, conn: sa.Connection, messages: list[Incoming]) -> list[Incoming]:
        """`messages` without those that `requires_participant` from someone who is not a participant.

        A participant is in the table, or mentions the bot in the same batch (their mention and a quick
        follow-up may be committed together).
        """
        asking = {(m.thread, m.user_id) for m in messages if m.requires_participant}
        p = self._participants
        columns = (p.c.team_id, p.c.channel, p.c.thread_ts, p.c.user_id)
        result = conn.execute(
            sa.select(*columns).where(
                sa.tuple_(*columns).in_([(t.team_id, t.channel, t.thread_ts, user) for t, user in asking])
            )
        )
        participants = {(ThreadKey(r.team_id, r.channel, r.thread_ts), str(r.user_id)) for r in result}
        participants |= {(m.thread, m.user_id) for m in messages if m.starts_session}
        return [m for m in messages if not m.requires_participant or (m.thread, m.user_id) in participants]


def _key(incoming: Incoming) -> MessageKey:
    return (incoming.thread.team_id, incoming.thread.channel, incoming.ts)
