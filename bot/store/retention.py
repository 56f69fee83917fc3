"""Durable side of retention and forget: detaching a thread's rows, tombstones, and the OpenAI deletion queue.

A thread is forgotten in two steps. `detach` removes its rows in one transaction (session, files, the
words of its turns), writes a tombstone and queues its OpenAI objects in `openai_deletions`; from then
on a message in the thread starts a fresh session. The queue is then drained (`claim_deletions`,
`deletion_done`, `deletion_failed`) until OpenAI has none of them; a failure stays queued for the
next sweep. Rows first, OpenAI second: a message that arrives while OpenAI is being called meets a
fresh session, never a conversation that is half deleted.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.domain import ThreadKey
from bot.store.tables import (
    delivered_outputs,
    openai_deletions,
    sessions,
    thread_files,
    thread_tombstones,
    turns,
)

UNFINISHED = ("pending", "running")
# Threads detached per transaction in a sweep (each thread's rows are few; this bounds lock time).
DETACH_BATCH = 200
# How long a replica's claim on a queued deletion holds before another replica may take it.
DELETION_CLAIM_S = 600.0
# The order objects are deleted in: the container (copies of the files) first, the files last.
KIND_ORDER = ("container", "conversation", "response", "file")


@dataclass(frozen=True)
class Deletion:
    """One OpenAI object waiting to be deleted."""

    id: int
    kind: str
    object_id: str
    thread: ThreadKey


@dataclass(frozen=True)
class Tombstone:
    """What is left of a forgotten thread: when and why its data was deleted."""

    thread: ThreadKey
    deleted_at: float
    reason: str  # "retention" | "forget" | "uninstalled"
    idle_days: float | None


@dataclass
class Detached:
    """The threads whose rows were removed, and how many OpenAI objects of each kind were queued."""

    threads: list[ThreadKey] = field(default_factory=list)
    queued: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _key_columns(table: sa.Table) -> tuple[sa.ColumnElement[Any], ...]:
    return (table.c.team_id, table.c.channel, table.c.thread_ts)


def _in_threads(table: sa.Table, threads: Collection[ThreadKey]) -> sa.ColumnElement[bool]:
    return sa.tuple_(*_key_columns(table)).in_([(t.team_id, t.channel, t.thread_ts) for t in threads])


def _same_thread(table: sa.Table, thread: ThreadKey) -> tuple[sa.ColumnElement[bool], ...]:
    return (table.c.team_id == thread.team_id, table.c.channel == thread.channel, table.c.thread_ts == thread.thread_ts)


class RetentionStore:
    """Database calls of retention and forget, on the bot's engine."""

    def __init__(self, engine: AsyncEngine, *, insert: Any, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._insert = insert
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"

    def now(self) -> float:
        """The store's clock (tests move it instead of sleeping)."""
        return self._clock()

    # ---- finding threads -------------------------------------------------------------------------------

    def _idle(self, cutoff: float) -> sa.ColumnElement[bool]:
        """A session untouched since `cutoff`, with no unfinished turn and no turn touched since then."""
        busy = (
            sa.select(turns.c.id)
            .where(
                turns.c.team_id == sessions.c.team_id,
                turns.c.channel == sessions.c.channel,
                turns.c.thread_ts == sessions.c.thread_ts,
                sa.or_(turns.c.status.in_(UNFINISHED), turns.c.updated_at >= cutoff),
            )
            .exists()
        )
        return sa.and_(sessions.c.updated_at < cutoff, ~busy)

    async def threads_by_message(self, channel: str, ts: str, team_id: str | None = None) -> list[ThreadKey]:
        """The threads (session, tombstone or queued deletions) rooted at `channel`/`ts`, for the terminal."""
        found: set[ThreadKey] = set()
        async with self._engine.connect() as conn:
            for table in (sessions, thread_tombstones, openai_deletions):
                query = sa.select(*_key_columns(table)).where(table.c.channel == channel, table.c.thread_ts == ts)
                if team_id:
                    query = query.where(table.c.team_id == team_id)
                found |= {ThreadKey(*row) for row in await conn.execute(query.distinct())}
        return sorted(found)

    async def team_threads(self, team_id: str) -> list[ThreadKey]:
        """Every thread of workspace `team_id` that has a session or deletions still queued."""
        found: set[ThreadKey] = set()
        async with self._engine.connect() as conn:
            for table in (sessions, openai_deletions):
                query = sa.select(*_key_columns(table)).where(table.c.team_id == team_id).distinct()
                found |= {ThreadKey(*row) for row in await conn.execute(query)}
        return sorted(found)

    async def tombstone(self, thread: ThreadKey) -> Tombstone | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(thread_tombstones).where(*_same_thread(thread_tombstones, thread)))
            ).first()
        return None if row is None else _tombstone(row)

    async def take_tombstone_notice(self, thread: ThreadKey) -> Tombstone | None:
        """The thread's tombstone if nobody was told of it yet; marks it told (once, also across processes)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(thread_tombstones)
                .where(*_same_thread(thread_tombstones, thread), thread_tombstones.c.announced_at.is_(None))
                .values(announced_at=self._clock())
                .returning(*thread_tombstones.c)
            )
            row = result.first()
        return None if row is None else _tombstone(row)

    # ---- detaching -------------------------------------------------------------------------------------

    async def detach_idle(self, cutoff: float, *, idle_days: float, limit: int = DETACH_BATCH) -> Detached:
        """Detach up to `limit` threads idle since `cutoff` (see the module docstring); `reason` "retention".

        On PostgreSQL the session rows are locked with SKIP LOCKED, so replicas sweep different threads.
        """
        async with self._engine.begin() as conn:
            query = (
                sa.select(*_key_columns(sessions), sessions.c.conversation_id, sessions.c.container_id)
                .where(self._idle(cutoff))
                .limit(limit)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True, of=sessions)
            rows = (await conn.execute(query)).all()
            return await self._detach(conn, rows, reason="retention", idle_days=idle_days)

    async def detach(self, thread: ThreadKey, *, reason: str = "forget") -> Detached:
        """Detach one thread now, idle or not; its unfinished turns end as `forgotten`.

        Returns an empty `Detached` when the thread has no session.
        """
        async with self._engine.begin() as conn:
            query = sa.select(*_key_columns(sessions), sessions.c.conversation_id, sessions.c.container_id).where(
                *_same_thread(sessions, thread)
            )
            if self._postgres:
                query = query.with_for_update(of=sessions)
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(
                    sa.update(turns)
                    .where(*_same_thread(turns, thread), turns.c.status.in_(UNFINISHED))
                    .values(status="done", outcome="forgotten", updated_at=self._clock())
                )
            return await self._detach(conn, rows, reason=reason, idle_days=None)

    async def _detach(
        self, conn: AsyncConnection, rows: Sequence[Any], *, reason: str, idle_days: float | None
    ) -> Detached:
        detached = Detached()
        if not rows:
            return detached
        now = self._clock()
        threads = [ThreadKey(r.team_id, r.channel, r.thread_ts) for r in rows]
        objects: list[tuple[str, str, ThreadKey]] = []
        for r, thread in zip(rows, threads, strict=True):
            if r.container_id:
                objects.append(("container", r.container_id, thread))
            if r.conversation_id:
                objects.append(("conversation", r.conversation_id, thread))

        # Responses of turns since the thread was last forgotten (older ones were deleted then).
        before = {
            ThreadKey(*row[:3]): float(row[3])
            for row in await conn.execute(
                sa.select(*_key_columns(thread_tombstones), thread_tombstones.c.deleted_at).where(
                    _in_threads(thread_tombstones, threads)
                )
            )
        }
        for row in await conn.execute(
            sa.select(*_key_columns(turns), turns.c.response_id, turns.c.created_at).where(
                _in_threads(turns, threads), turns.c.response_id.is_not(None)
            )
        ):
            thread = ThreadKey(*row[:3])
            if float(row.created_at) > before.get(thread, float("-inf")):
                objects.append(("response", row.response_id, thread))

        # Uploaded files, unless another thread still uses the same upload.
        files = (
            await conn.execute(
                sa.select(*_key_columns(thread_files), thread_files.c.openai_file_id).where(
                    _in_threads(thread_files, threads)
                )
            )
        ).all()
        file_ids = {row.openai_file_id for row in files}
        shared: set[str] = set()
        if file_ids:
            shared = {
                row[0]
                for row in await conn.execute(
                    sa.select(thread_files.c.openai_file_id).where(
                        thread_files.c.openai_file_id.in_(file_ids), ~_in_threads(thread_files, threads)
                    )
                )
            }
        seen: set[str] = set()
        for row in files:
            if row.openai_file_id not in shared and row.openai_file_id not in seen:
                seen.add(row.openai_file_id)
                objects.append(("file", row.openai_file_id, ThreadKey(*row[:3])))

        # The rows. Turns stay for usage accounting, without the user's words or file names.
        await conn.execute(sa.delete(thread_files).where(_in_threads(thread_files, threads)))
        await conn.execute(sa.delete(sessions).where(_in_threads(sessions, threads)))
        await conn.execute(sa.update(turns).where(_in_threads(turns, threads)).values(text="", files_json="[]"))
        containers = [o[1] for o in objects if o[0] == "container"]
        if containers:
            await conn.execute(sa.delete(delivered_outputs).where(delivered_outputs.c.container_id.in_(containers)))
        tombstone = self._insert(thread_tombstones)
        await conn.execute(
            tombstone.on_conflict_do_update(
                index_elements=list(_key_columns(thread_tombstones)),
                set_={
                    "deleted_at": tombstone.excluded.deleted_at,
                    "reason": tombstone.excluded.reason,
                    "idle_days": tombstone.excluded.idle_days,
                    "announced_at": None,
                },
            ),
            [
                {
                    "team_id": t.team_id,
                    "channel": t.channel,
                    "thread_ts": t.thread_ts,
                    "deleted_at": now,
                    "reason": reason,
                    "idle_days": idle_days,
                    "announced_at": None,
                }
                for t in threads
            ],
        )
        if objects:
            await conn.execute(
                self._insert(openai_deletions).on_conflict_do_nothing(),
                [
                    {
                        "kind": kind,
                        "object_id": object_id,
                        "team_id": t.team_id,
                        "channel": t.channel,
                        "thread_ts": t.thread_ts,
                        "created_at": now,
                        "not_before": 0.0,
                        "attempts": 0,
                        "last_error": "",
                    }
                    for kind, object_id, t in objects
                ],
            )
        detached.threads = threads
        for kind, _object_id, _thread in objects:
            detached.queued[kind] += 1
        return detached

    # ---- the deletion queue ----------------------------------------------------------------------------

    async def claim_deletions(
        self, *, due_before: float, limit: int, thread: ThreadKey | None = None
    ) -> list[Deletion]:
        """Claim up to `limit` queued deletions due before `due_before` (a sweep passes its start time, so
        what fails in it waits for the next sweep); the claim keeps other replicas off for a while."""
        async with self._engine.begin() as conn:
            query = (
                sa.select(openai_deletions.c.id)
                .where(openai_deletions.c.not_before <= due_before)
                .order_by(openai_deletions.c.id)
                .limit(limit)
            )
            if thread is not None:
                query = query.where(*_same_thread(openai_deletions, thread))
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            ids = [int(row[0]) for row in await conn.execute(query)]
            if not ids:
                return []
            result = await conn.execute(
                sa.update(openai_deletions)
                .where(openai_deletions.c.id.in_(ids))
                .values(not_before=self._clock() + DELETION_CLAIM_S)
                .returning(*openai_deletions.c)
            )
            rows = result.all()
        claimed = [Deletion(int(r.id), r.kind, r.object_id, ThreadKey(r.team_id, r.channel, r.thread_ts)) for r in rows]
        return sorted(claimed, key=lambda d: (KIND_ORDER.index(d.kind) if d.kind in KIND_ORDER else 9, d.id))

    async def deletions_done(self, ids: Collection[int]) -> None:
        if not ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(openai_deletions).where(openai_deletions.c.id.in_(list(ids))))

    async def deletion_failed(self, deletion_id: int, error: str) -> None:
        """Leave the deletion for the next sweep, noting why it failed (no content, only the error)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(openai_deletions)
                .where(openai_deletions.c.id == deletion_id)
                .values(not_before=self._clock(), attempts=openai_deletions.c.attempts + 1, last_error=error[:500])
            )

    async def pending_deletions(self, thread: ThreadKey | None = None) -> int:
        async with self._engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(openai_deletions)
            if thread is not None:
                query = query.where(*_same_thread(openai_deletions, thread))
            return int((await conn.execute(query)).scalar_one())


def _tombstone(row: sa.Row[Any]) -> Tombstone:
    return Tombstone(
        thread=ThreadKey(row.team_id, row.channel, row.thread_ts),
        deleted_at=float(row.deleted_at),
        reason=str(row.reason),
        idle_days=None if row.idle_days is None else float(row.idle_days),
    )


def tombstoned_threads_query(threads: Collection[ThreadKey]) -> sa.Select[Any]:
    """Which of `threads` have a tombstone (for the acceptor's one extra lookup)."""
    return sa.select(*_key_columns(thread_tombstones)).where(_in_threads(thread_tombstones, threads))
