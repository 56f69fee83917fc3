"""Async SQLAlchemy engines for the bot's database URLs: driver mapping, pool sizes, SQLite pragmas."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_S = 30
# Statement parameters carry people's messages and file names: keep them out of error messages and logs.
_ENGINE_OPTIONS: dict[str, Any] = {"hide_parameters": True}
WAL_SWITCH_RETRY_DELAYS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def async_database_url(url: str) -> str:
    """Map `sqlite:///x` and `postgresql://…` to the async drivers' URL schemes."""
    if url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://"):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def create_engine(database_url: str, *, pool_size: int = 20) -> AsyncEngine:
    """An async engine for `database_url` (sync or async scheme); SQLite files run in WAL mode.

    `pool_size` is the PostgreSQL pool (default: enough for the turns running at once plus the acceptor).
    """
    url = sa.engine.make_url(async_database_url(database_url))
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True, **_ENGINE_OPTIONS)
    cargs, cparams = sa.create_engine(url.set(drivername="sqlite")).dialect.create_connect_args(url)
    cparams.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)

    async def connect() -> aiosqlite.Connection:
        return await _connect_sqlite(*cargs, **cparams)

    return create_async_engine(url, async_creator=connect, **_ENGINE_OPTIONS)


async def _connect_sqlite(*args: Any, **kwargs: Any) -> aiosqlite.Connection:
    connecting = aiosqlite.connect(*args, **kwargs)
    # As SQLAlchemy's own aiosqlite dialect does: a connection left open must not keep the process alive.
    thread = getattr(connecting, "_thread", None)
    if thread is not None:
        thread.daemon = True
    conn = await connecting
    try:
        await _enter_wal_mode(conn)
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    except BaseException:
        await conn.close()
        raise
    return conn


async def _enter_wal_mode(conn: aiosqlite.Connection) -> None:
    """WAL mode (kept in the file) lets readers go on while one process writes.

    Switching a new file to WAL can fail with "database is locked" while another process or connection
    switches it at the same moment, without SQLite's busy timeout applying: retry for a few seconds.
    """
    for delay_s in WAL_SWITCH_RETRY_DELAYS_S:
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            await asyncio.sleep(delay_s)
    await conn.execute("PRAGMA journal_mode=WAL")


def sync_sqlite_engine(engine: AsyncEngine) -> sa.Engine | None:
    """For a SQLite `engine`: a blocking engine on the same file, with the same settings, for work done
    in one hop to a thread (see `bot.store.acceptor`); None for other databases."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None  # an in-memory database is private to its connection: no second engine can share it
    url = engine.url.set(drivername="sqlite")
    sync = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}, **_ENGINE_OPTIONS
    )

    @sa.event.listens_for(sync, "connect")
    def settings(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")

    return sync
