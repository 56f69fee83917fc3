"""Records incoming user messages as pending turns, exactly once, in group commits.

Slack must be acknowledged within 3 s, and only after the message is durable. When hundreds of
events arrive together, one transaction per event queues them behind each other (SQLite's file lock,
a small PostgreSQL pool). So concurrent calls are gathered by one writer task and committed
together: every caller still returns only after its own row is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.domain import Incoming, ThreadKey, Turn

log = logging.getLogger(__name__)

MAX_BATCH = 500
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

    async def _write_loop(self) -> None:
        while not (self._closing and not self._queue):
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    results = await self._write([incoming for incoming, _ in batch])
                except Exception as exc:
                    log.exception("recording %d incoming message(s) failed", len(batch))
                    for incoming, future in batch:
                        self._inflight.pop(_key(incoming), None)
                        if not future.done():
                            future.set_exception(exc)
                    continue
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

    async def _write(self, batch: list[Incoming]) -> dict[MessageKey, Turn]:
        """One transaction for the whole batch; returns the turns that were new, by message key."""
        now = self._clock()
        by_key: dict[MessageKey, Incoming] = {}
        for incoming in batch:
            by_key.setdefault(_key(incoming), incoming)
        messages = list(by_key.values())
        async with self._engine.begin() as conn:
            starting: dict[ThreadKey, Incoming] = {}
            for m in messages:
                if m.starts_session:
                    starting.setdefault(m.thread, m)
            others = {m.thread for m in messages if m.thread not in starting}
            known = set(starting)
            if others:
                columns = (self._sessions.c.team_id, self._sessions.c.channel, self._sessions.c.thread_ts)
                result = await conn.execute(
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
                tombstoned = {ThreadKey(*row) for row in await conn.execute(self._tombstoned(maybe))}
                for m in messages:
                    if m.thread in tombstoned:
                        starting.setdefault(m.thread, m)
                known |= tombstoned
            if starting:
                await conn.execute(
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
                ours = await self._from_participants(conn, ours)
            if not ours:
                return {}
            speakers = {(m.thread, m.user_id) for m in ours if m.starts_session}
            if speakers:
                await conn.execute(
                    self._insert_participant,
                    [
                        {"team_id": t.team_id, "channel": t.channel, "thread_ts": t.thread_ts, "user_id": user}
                        for t, user in sorted(speakers)
                    ],
                )
            result = await conn.execute(
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

    async def _from_participants(self, conn: AsyncConnection, messages: list[Incoming]) -> list[Incoming]:
        """`messages` without those that `requires_participant` from someone who is not a participant.

        A participant is in the table, or mentions the bot in the same batch (their mention and a quick
        follow-up may be committed together).
        """
        asking = {(m.thread, m.user_id) for m in messages if m.requires_participant}
        p = self._participants
        columns = (p.c.team_id, p.c.channel, p.c.thread_ts, p.c.user_id)
        result = await conn.execute(
            sa.select(*columns).where(
                sa.tuple_(*columns).in_([(t.team_id, t.channel, t.thread_ts, user) for t, user in asking])
            )
        )
        participants = {(ThreadKey(r.team_id, r.channel, r.thread_ts), str(r.user_id)) for r in result}
        participants |= {(m.thread, m.user_id) for m in messages if m.starts_session}
        return [m for m in messages if not m.requires_participant or (m.thread, m.user_id) in participants]


def _key(incoming: Incoming) -> MessageKey:
    return (incoming.thread.team_id, incoming.thread.channel, incoming.ts)
