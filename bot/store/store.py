"""Durable state: thread sessions, their files, turns (exactly-once and pending work), delivered outputs.

SQLAlchemy Core on an async engine: SQLite through aiosqlite by default, PostgreSQL through asyncpg.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.domain import Incoming, Session, SlackFile, ThreadFile, ThreadKey, Turn
from bot.errors import StoreUnavailable
from bot.store.acceptor import TurnAcceptor
from bot.store.engine import create_engine
from bot.store.migrate import upgrade
from bot.store.retention import RetentionStore, tombstoned_threads_query
from bot.store.tables import (
    access_notices,
    delivered_outputs,
    feedback,
    session_participants,
    sessions,
    spend_totals,
    thread_files,
    turns,
)

UNFINISHED = ("pending", "running")
DEFAULT_LEASE_S = 60.0


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _database_errors_as_ours(method: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """Raise `StoreUnavailable` for a database that failed the call (the driver's errors stay in here)."""

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(*args, **kwargs)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"{method.__name__}: {exc.__class__.__name__}: {exc}") from exc

    return wrapper


def spend_periods(timestamp: float) -> tuple[str, str]:
    """The UTC day (`2026-11-30`) and month (`2026-11`) a turn's spending counts in."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")


def default_owner() -> str:
    """A name for this process in turn claims, unique per process (host, pid and a random part).

    Two processes never share it, also on one host or after a pid is reused; leases, not names, decide
    which process answers a turn.
    """
    return f"{socket.gethostname() or 'bot'}-{os.getpid()}-{secrets.token_hex(4)}"


class Store:
    """Async access to the bot's tables. Create with `await Store.open(url)`; close with `close()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        owner: str = "",
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._dialect = engine.dialect.name
        self.owner = owner or default_owner()
        self.lease_s = lease_s
        self._acceptor = TurnAcceptor(
            engine,
            sessions=sessions,
            turns=turns,
            participants=session_participants,
            insert=self._insert,
            owner=self.owner,
            lease_s=lease_s,
            clock=clock,
            tombstoned=tombstoned_threads_query,
        )
        # Retention and forget: tombstones and the OpenAI deletion queue.
        self.retention = RetentionStore(engine, insert=self._insert, clock=clock)

    @classmethod
    async def open(
        cls,
        database_url: str,
        *,
        owner: str = "",
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] = time.time,
    ) -> Store:
        """Connect, bring the schema to the newest revision (see `bot.store.migrate`), return the store.

        `owner` names this process in the turns it claims (default: unique per process); `lease_s` is how
        long a claim holds without renewal before another process may take the turn over; `clock` gives
        the time in seconds (tests move it instead of sleeping). Raises `DatabaseUnavailable` when the
        database cannot be reached or was migrated by a newer bot.
        """
        engine = create_engine(database_url)
        try:
            await upgrade(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, owner=owner, lease_s=lease_s, clock=clock)

    @property
    def engine(self) -> AsyncEngine:
        """The store's engine, for readers with their own queries (`bot.store.usage.UsageLedger`)."""
        return self._engine

    async def close(self) -> None:
        await self._acceptor.close()
        await self._engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        """INSERT with the dialect's ON CONFLICT support (only the dialect in use is imported)."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            return postgresql_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    # ---- sessions ---------------------------------------------------------------------------------------

    async def accept_message(self, incoming: Incoming) -> Turn | None:
        """Record a user message as a pending turn, exactly once, durably before returning.

        A message that `starts_session` creates the thread's session if missing and makes its author a
        participant of the session; any other message is only accepted when the thread already has a
        session (and, if it `requires_participant`, when its author is a participant). Returns the new
        turn, or None when the message is not ours or was already recorded (a duplicate delivery).
        Concurrent calls are committed together (see `bot.store.acceptor`).
        """
        return await self._acceptor.accept(incoming)

    @_database_errors_as_ours
    async def claim_access_notice(self, key: ThreadKey, user_id: str, *, only_in_session: bool) -> bool:
        """Record that `user_id` was told "not enabled for you here" for `key`; True only the first time.

        `key` is the thread (for un-mentioned replies) or the refused message's own ts (for a mention or a
        DM). With `only_in_session` nothing is recorded, and False returned, unless the bot has a session in
        that thread: a reply elsewhere was not addressed to the bot.
        """
        async with self._engine.begin() as conn:
            if only_in_session and await self._session_row(conn, key) is None:
                return False
            result = await conn.execute(
                self._insert(access_notices).on_conflict_do_nothing().returning(access_notices.c.user_id),
                {
                    "team_id": key.team_id,
                    "channel": key.channel,
                    "thread_ts": key.thread_ts,
                    "user_id": user_id,
                    "created_at": self._clock(),
                },
            )
            return result.first() is not None

    async def participants(self, thread: ThreadKey) -> set[str]:
        """User ids that may follow up in `thread` without a mention when FOLLOW_UPS=participants."""
        async with self._engine.connect() as conn:
            result = await conn.execute(
                sa.select(session_participants.c.user_id).where(*_thread_where(session_participants, thread))
            )
            return {str(row.user_id) for row in result}

    async def _session_row(self, conn: AsyncConnection, thread: ThreadKey) -> sa.Row[Any] | None:
        result = await conn.execute(sa.select(sessions).where(*_thread_where(sessions, thread)))
        return result.first()

    async def session(self, thread: ThreadKey) -> Session | None:
        """The thread's session, or None if the bot has never been asked in this thread."""
        async with self._engine.connect() as conn:
            row = await self._session_row(conn, thread)
        if row is None:
            return None
        return Session(
            thread=thread,
            conversation_id=row.conversation_id,
            container_id=row.container_id,
            root_checked=bool(row.root_checked),
        )

    async def update_session(self, thread: ThreadKey, **values: Any) -> None:
        """Set `conversation_id`, `container_id` and/or `root_checked` of an existing session."""
        allowed = {"conversation_id", "container_id", "root_checked"}
        if not values.keys() <= allowed:
            raise ValueError(f"unknown session fields: {set(values) - allowed}")
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(sessions).where(*_thread_where(sessions, thread)).values(**values, updated_at=self._clock())
            )

    # ---- files ------------------------------------------------------------------------------------------

    async def thread_files(self, thread: ThreadKey) -> list[ThreadFile]:
        """The thread's files in the order they were added."""
        async with self._engine.connect() as conn:
            result = await conn.execute(
                sa.select(thread_files)
                .where(*_thread_where(thread_files, thread))
                .order_by(thread_files.c.created_at, thread_files.c.slack_file_id)
            )
            rows = result.all()
        return [
            ThreadFile(
                slack_file_id=r.slack_file_id,
                openai_file_id=r.openai_file_id,
                filename=r.filename,
                size_bytes=int(r.size_bytes),
                description=r.description or "",
                sha256=r.sha256 or "",
            )
            for r in rows
        ]

    async def add_thread_file(self, thread: ThreadKey, file: ThreadFile) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self._insert(thread_files)
                .values(
                    team_id=thread.team_id,
                    channel=thread.channel,
                    thread_ts=thread.thread_ts,
                    slack_file_id=file.slack_file_id,
                    openai_file_id=file.openai_file_id,
                    filename=file.filename,
                    size_bytes=file.size_bytes,
                    description=file.description,
                    sha256=file.sha256,
                    created_at=self._clock(),
                )
                .on_conflict_do_nothing()
            )

    # ---- turns ------------------------------------------------------------------------------------------

    # A turn moves pending -> running -> done | failed. Each transition below holds only while this
    # process owns the turn's claim (`owner`), and a finished turn is never claimed again, so a turn is
    # answered by one process at a time and never after it was recorded as finished.

    @_database_errors_as_ours
    async def start_turn(self, turn_id: int) -> int | None:
        """Mark a turn running and count the attempt, if this process still holds its claim.

        Returns the attempt number (1 for the first), or None when the turn is finished or another
        process has taken it over: then it must not run here.
        """
        now = self._clock()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(turns)
                .where(turns.c.id == turn_id, turns.c.owner == self.owner, turns.c.status.in_(UNFINISHED))
                .values(status="running", attempts=turns.c.attempts + 1, lease_until=now + self.lease_s, updated_at=now)
                .returning(turns.c.attempts)
            )
            row = result.first()
        return None if row is None else int(row[0])

    @_database_errors_as_ours
    async def set_answer_messages(self, turn_id: int, message_ts: Sequence[str]) -> None:
        """Remember the Slack messages that carry the answer so far (replaced if the turn is interrupted)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(turns)
                .where(turns.c.id == turn_id, turns.c.owner == self.owner)
                .values(
                    reply_ts=message_ts[0] if message_ts else None,
                    answer_messages=json.dumps(list(message_ts)),
                    updated_at=self._clock(),
                )
            )

    @_database_errors_as_ours
    async def finish_turn(
        self,
        turn_id: int,
        *,
        status: str,
        outcome: str,
        response_id: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
        containers_created: int = 0,
        bytes_uploaded: int = 0,
        cost_usd: float = 0.0,
        duration_s: float | None = None,
    ) -> bool:
        """Mark a turn `done` or `failed` with a short outcome code and its usage; it will not run again.

        `cost_usd` is the turn's estimated cost (tokens and containers), what budgets count.

        Returns False (and changes nothing) when this process no longer holds the turn's claim.
        """
        if status not in {"done", "failed"}:
            raise ValueError(status)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(turns)
                .where(turns.c.id == turn_id, turns.c.owner == self.owner, turns.c.status.in_(UNFINISHED))
                .values(
                    status=status,
                    outcome=outcome,
                    response_id=response_id,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cached_input_tokens=cached_input_tokens,
                    reasoning_tokens=reasoning_tokens,
                    containers_created=containers_created,
                    bytes_uploaded=bytes_uploaded,
                    cost_usd=cost_usd,
                    duration_s=duration_s,
                    updated_at=self._clock(),
                )
                .returning(turns.c.team_id, turns.c.channel, turns.c.user_id, turns.c.created_at)
            )
            row = result.first()
            if row is None:
                return False
            if cost_usd > 0:
                await self._add_spending(conn, row, cost_usd)
            return True

    async def _add_spending(self, conn: AsyncConnection, turn: sa.Row[Any], cost_usd: float) -> None:
        """Add a recorded turn's cost to its user's and channel's day and its team's month."""
        day, month = spend_periods(float(turn.created_at))
        rows = [
            {"scope": "user", "team_id": turn.team_id, "key": turn.user_id, "period": day, "cost_usd": cost_usd},
            {"scope": "channel", "team_id": turn.team_id, "key": turn.channel, "period": day, "cost_usd": cost_usd},
            {"scope": "team", "team_id": turn.team_id, "key": turn.team_id, "period": month, "cost_usd": cost_usd},
        ]
        insert = self._insert(spend_totals)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=[
                    spend_totals.c.scope,
                    spend_totals.c.team_id,
                    spend_totals.c.key,
                    spend_totals.c.period,
                ],
                set_={"cost_usd": spend_totals.c.cost_usd + insert.excluded.cost_usd},
            ),
            rows,
        )

    async def claim_unfinished_turns(self) -> list[Turn]:
        """Claim the unfinished turns that no live process holds (their lease ran out), oldest first.

        Leases, not names, decide: a turn whose claim is still renewed is never taken, whoever owns it,
        and each turn is claimed by one process only (the update re-checks the lease under its row lock).
        """
        now = self._clock()
        claimable = sa.and_(turns.c.status.in_(UNFINISHED), turns.c.lease_until < now)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(turns)
                .where(claimable)
                .values(owner=self.owner, lease_until=now + self.lease_s)
                .returning(*turns.c)
            )
            rows = sorted(result.all(), key=lambda r: int(r.id))
        return [_turn_from_row(r) for r in rows]

    async def renew_leases(self, turn_ids: Collection[int]) -> set[int]:
        """Extend this process's claims on `turn_ids` (the turns it holds); returns those still its own.

        A held turn missing from the result was taken over or finished elsewhere: stop working on it.
        Turns of this process that it no longer holds (not in `turn_ids`) are left to expire, so any
        process, this one included, claims them again.
        """
        if not turn_ids:
            return set()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(turns)
                .where(turns.c.owner == self.owner, turns.c.status.in_(UNFINISHED), turns.c.id.in_(list(turn_ids)))
                .values(lease_until=self._clock() + self.lease_s)
                .returning(turns.c.id)
            )
            return {int(row[0]) for row in result.all()}

    async def release_leases(self) -> None:
        """Give up this owner's claims (clean shutdown) so any process may answer them at once."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(turns)
                .where(turns.c.owner == self.owner, turns.c.status.in_(UNFINISHED))
                .values(lease_until=0.0)
            )

    async def unfinished_turns(self) -> list[Turn]:
        """Turns acknowledged but not answered (pending or interrupted), oldest first."""
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.select(turns).where(turns.c.status.in_(UNFINISHED)).order_by(turns.c.id))
            rows = result.all()
        return [_turn_from_row(r) for r in rows]

    async def turn_status(self, turn_id: int) -> str | None:
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.select(turns.c.status).where(turns.c.id == turn_id))
            row = result.first()
        return None if row is None else str(row[0])

    # ---- feedback -----------------------------------------------------------------------------------

    async def record_feedback(
        self, *, thread: ThreadKey, message_ts: str, user_id: str, response_id: str, rating: str
    ) -> None:
        """Store a helpful / not helpful vote on an answer."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(feedback).values(
                    team_id=thread.team_id,
                    channel=thread.channel,
                    thread_ts=thread.thread_ts,
                    message_ts=message_ts,
                    user_id=user_id,
                    response_id=response_id,
                    rating=rating,
                    created_at=self._clock(),
                )
            )

    async def feedback_for(self, response_id: str) -> list[tuple[str, str]]:
        """(user, rating) votes on one response, oldest first."""
        async with self._engine.connect() as conn:
            result = await conn.execute(
                sa.select(feedback.c.user_id, feedback.c.rating)
                .where(feedback.c.response_id == response_id)
                .order_by(feedback.c.id)
            )
            return [(str(r[0]), str(r[1])) for r in result.all()]

    @_database_errors_as_ours
    async def recent_threads(self, team_id: str, user_id: str, *, limit: int = 10) -> list[tuple[ThreadKey, str]]:
        """The threads `user_id` asked the bot in most recently, newest first, each with its first question
        of theirs (for the App Home list). At most `limit` threads."""
        query = (
            sa.select(turns.c.channel, turns.c.thread_ts, turns.c.text)
            .where(turns.c.team_id == team_id, turns.c.user_id == user_id)
            .order_by(turns.c.created_at.desc(), turns.c.id.desc())
            .limit(limit * 20)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        firsts: dict[ThreadKey, str] = {}
        for channel, thread_ts, text in rows:  # newest first: the last text seen is the thread's first
            firsts[ThreadKey(team_id, str(channel), str(thread_ts))] = str(text)
        return list(firsts.items())[:limit]

    # ---- generated outputs -----------------------------------------------------------------------------

    async def claim_output(self, container_id: str, file_id: str) -> bool:
        """Claim a model-generated file for upload; False if it was already delivered."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                self._insert(delivered_outputs)
                .values(container_id=container_id, file_id=file_id, created_at=self._clock())
                .on_conflict_do_nothing()
                .returning(delivered_outputs.c.file_id)
            )
            return result.first() is not None

    async def release_output(self, container_id: str, file_id: str) -> None:
        """Undo `claim_output` after a failed upload so a later turn can try again."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(delivered_outputs).where(
                    delivered_outputs.c.container_id == container_id, delivered_outputs.c.file_id == file_id
                )
            )


def _thread_where(table: sa.Table, thread: ThreadKey) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        table.c.team_id == thread.team_id,
        table.c.channel == thread.channel,
        table.c.thread_ts == thread.thread_ts,
    )


def _turn_from_row(r: sa.Row[Any]) -> Turn:
    return Turn(
        id=int(r.id),
        thread=ThreadKey(r.team_id, r.channel, r.thread_ts),
        ts=r.ts,
        user_id=r.user_id,
        text=r.text,
        files=tuple(SlackFile.from_slack(f) for f in json.loads(r.files_json or "[]")),
        is_thread_reply=bool(r.is_thread_reply),
        attempts=int(r.attempts),
        answer_messages=_answer_messages(r),
    )


def _answer_messages(r: sa.Row[Any]) -> tuple[str, ...]:
    if r.answer_messages:
        return tuple(str(ts) for ts in json.loads(r.answer_messages))
    return (r.reply_ts,) if r.reply_ts else ()
