"""Durable state: thread sessions, their files, turns (exactly-once and pending work), delivered outputs.

SQLAlchemy Core on an async engine: SQLite through aiosqlite by default, PostgreSQL through asyncpg.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.domain import Incoming, Session, SlackFile, ThreadFile, ThreadKey, Turn
from bot.store.acceptor import TurnAcceptor
from bot.store.engine import create_engine
from bot.store.migrate import upgrade
from bot.store.tables import delivered_outputs, feedback, sessions, thread_files, turns

UNFINISHED = ("pending", "running")
DEFAULT_LEASE_S = 60.0


def default_owner() -> str:
    """This process's name in turn claims: the host name (stable across restarts in one container)."""
    return socket.gethostname() or "bot"


class Store:
    """Async access to the bot's tables. Create with `await Store.open(url)`; close with `close()`."""

    def __init__(self, engine: AsyncEngine, *, owner: str = "", lease_s: float = DEFAULT_LEASE_S) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self.owner = owner or default_owner()
        self.lease_s = lease_s
        self._acceptor = TurnAcceptor(
            engine, sessions=sessions, turns=turns, insert=self._insert, owner=self.owner, lease_s=lease_s
        )

    @classmethod
    async def open(cls, database_url: str, *, owner: str = "", lease_s: float = DEFAULT_LEASE_S) -> Store:
        """Connect, bring the schema to the newest revision (see `bot.store.migrate`), return the store.

        `owner` names this process in the turns it claims (default: the host name); `lease_s` is how
        long a claim holds without renewal before another process may take the turn over. Raises
        `DatabaseUnavailable` when the database cannot be reached or was migrated by a newer bot.
        """
        engine = create_engine(database_url)
        try:
            await upgrade(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, owner=owner, lease_s=lease_s)

    async def close(self) -> None:
        await self._acceptor.close()
        await self._engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        """INSERT with the dialect's ON CONFLICT support."""
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # ---- sessions ---------------------------------------------------------------------------------------

    async def accept_message(self, incoming: Incoming) -> Turn | None:
        """Record a user message as a pending turn, exactly once, durably before returning.

        A message that `starts_session` creates the thread's session if missing; any other message is
        only accepted when the thread already has a session. Returns the new turn, or None when the
        message is not ours or was already recorded (a duplicate delivery). Concurrent calls are
        committed together (see `bot.store.acceptor`).
        """
        return await self._acceptor.accept(incoming)

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
                sa.update(sessions).where(*_thread_where(sessions, thread)).values(**values, updated_at=time.time())
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
                    created_at=time.time(),
                )
                .on_conflict_do_nothing()
            )

    # ---- turns ------------------------------------------------------------------------------------------

    async def start_turn(self, turn_id: int) -> None:
        """Mark a turn running and count the attempt."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(turns)
                .where(turns.c.id == turn_id)
                .values(status="running", attempts=turns.c.attempts + 1, updated_at=time.time())
            )

    async def set_reply_ts(self, turn_id: int, reply_ts: str) -> None:
        """Remember the Slack message that carries the answer (to mark it if the turn is interrupted)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(turns).where(turns.c.id == turn_id).values(reply_ts=reply_ts, updated_at=time.time())
            )

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
        duration_s: float | None = None,
    ) -> None:
        """Mark a turn `done` or `failed` with a short outcome code and its usage; it will not run again."""
        if status not in {"done", "failed"}:
            raise ValueError(status)
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(turns)
                .where(turns.c.id == turn_id)
                .values(
                    status=status,
                    outcome=outcome,
                    response_id=response_id,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    duration_s=duration_s,
                    updated_at=time.time(),
                )
            )

    async def claim_unfinished_turns(self) -> list[Turn]:
        """Claim the turns acknowledged but not answered that no live process holds, oldest first.

        That is this owner's own turns (a restart) and turns whose owner stopped renewing its lease
        (a crashed replica). Each turn is claimed by one process only.
        """
        now = time.time()
        claimable = sa.and_(
            turns.c.status.in_(UNFINISHED),
            sa.or_(turns.c.owner == self.owner, turns.c.lease_until < now),
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(turns)
                .where(claimable)
                .values(owner=self.owner, lease_until=now + self.lease_s)
                .returning(*turns.c)
            )
            rows = sorted(result.all(), key=lambda r: int(r.id))
        return [_turn_from_row(r) for r in rows]

    async def renew_leases(self) -> None:
        """Keep this owner's claims on its unfinished turns."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(turns)
                .where(turns.c.owner == self.owner, turns.c.status.in_(UNFINISHED))
                .values(lease_until=time.time() + self.lease_s)
            )

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
                    created_at=time.time(),
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

    # ---- generated outputs -----------------------------------------------------------------------------

    async def claim_output(self, container_id: str, file_id: str) -> bool:
        """Claim a model-generated file for upload; False if it was already delivered."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                self._insert(delivered_outputs)
                .values(container_id=container_id, file_id=file_id, created_at=time.time())
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
        reply_ts=r.reply_ts,
    )
