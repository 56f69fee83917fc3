"""Brings a database to the newest schema with Alembic, one process at a time.

The database records its revision in Alembic's `alembic_version` table. `upgrade` runs the missing
revisions in `bot.store.migrations` under a lock held in the database itself, so replicas started
together never migrate twice: on PostgreSQL a session-level advisory lock, on SQLite an exclusive
transaction. A database made before Alembic (the bot's tables, no `alembic_version`) is stamped at
the baseline revision first; its rows are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.errors import DatabaseUnavailable
from bot.store.engine import SQLITE_BUSY_TIMEOUT_S, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE_REVISION = "0001"
# The newest revision in `migrations/versions` (a test holds it to Alembic's own head). Knowing it without
# Alembic lets a database that is already there cost one query and no import of Alembic, which would
# otherwise stay in every bot process's memory (about 11 MB) for nothing.
HEAD_REVISION = "0007"
# Any fixed 64-bit number, the same in every process of this bot: the advisory lock's name.
POSTGRES_LOCK_KEY = 0x736C_6163_6B62_6F74  # "slackbot"
# How long a process waits for another one's migration on SQLite before it gives up.
SQLITE_LOCK_TIMEOUT_S = 600


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision this code knows (the schema of `bot.store.tables`)."""
    return HEAD_REVISION


async def current_revision(engine_or_url: AsyncEngine | str) -> str | None:
    """The revision the database records, or None for an empty or pre-Alembic database.

    Raises `DatabaseUnavailable` when the database cannot be reached.
    """
    async with _engine(engine_or_url) as engine, _connect(engine) as conn:
        return await conn.run_sync(_revision)


async def upgrade(engine_or_url: AsyncEngine | str) -> None:
    """Bring the database to `head_revision()`, creating the tables of an empty one.

    Waits while another process migrates the same database, then finds nothing left to do. A database
    already at head costs one query and takes no lock. Raises `DatabaseUnavailable` when the database
    cannot be reached or records a revision this code does not know (a newer bot migrated it).
    """
    head = head_revision()
    async with _engine(engine_or_url) as engine:
        async with _connect(engine) as conn:
            if await conn.run_sync(_revision) == head:
                return
        async with _connect(engine) as conn, _migration_lock(conn):
            await conn.run_sync(_upgrade_locked, head)


def _revision(conn: sa.Connection) -> str | None:
    """What `alembic_version` records (Alembic keeps one row there on a linear history), without Alembic."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def _upgrade_locked(conn: sa.Connection, head: str) -> None:
    """Runs inside the lock and the connection's transaction (which the caller commits)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    current = _revision(conn)
    if current == head:
        return
    scripts = ScriptDirectory.from_config(_config())
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise DatabaseUnavailable(
            f"the database is at revision {current}, which this version of the bot does not know "
            f"(its newest is {head}): run a newer version"
        )
    config = _config()
    config.attributes["connection"] = conn
    if current is None and sa.inspect(conn).has_table("sessions"):
        log.info("database made before migrations: recording it at revision %s", BASELINE_REVISION)
        command.stamp(config, BASELINE_REVISION)
    log.info("upgrading the database from revision %s to %s", current or "(empty)", head)
    command.upgrade(config, "head")


class _engine:
    """`async with _engine(x) as engine`: `x` itself, or an engine for the URL `x`, disposed afterwards."""

    def __init__(self, engine_or_url: AsyncEngine | str) -> None:
        self._given = engine_or_url if isinstance(engine_or_url, AsyncEngine) else None
        self._url = engine_or_url if isinstance(engine_or_url, str) else ""
        self._owned: AsyncEngine | None = None

    async def __aenter__(self) -> AsyncEngine:
        if self._given is not None:
            return self._given
        self._owned = create_engine(self._url, pool_size=1)
        return self._owned

    async def __aexit__(self, *exc: object) -> None:
        if self._owned is not None:
            await self._owned.dispose()


class _connect:
    """`async with _connect(engine) as conn`: a connection; failing to connect is `DatabaseUnavailable`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        try:
            self._conn = await self._engine.connect()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            where = self._engine.url.render_as_string(hide_password=True)
            raise DatabaseUnavailable(f"cannot connect to {where}: {_one_line(exc)}") from exc
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()


class _migration_lock:
    """Holds the database's migration lock on `conn`, and its transaction, for the `async with` body.

    The body's work is committed when it ends normally and rolled back otherwise; both release the lock.
    """

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def __aenter__(self) -> None:
        conn = self._conn
        if conn.dialect.name == "postgresql":
            # A session-level lock: it outlives the transactions below and dies with the connection if
            # the process does. DDL is transactional in PostgreSQL, so the upgrade is all or nothing.
            await conn.execute(sa.select(sa.func.pg_advisory_lock(POSTGRES_LOCK_KEY)))
            await conn.commit()
        else:
            # SQLite: BEGIN EXCLUSIVE on this one connection, rather than a lock file beside the database.
            # The lock then lives in the database file (no second file to agree on, none left behind by a
            # crash), waits through SQLite's busy timeout, and the upgrade is one transaction: SQLite's DDL
            # is transactional once the driver stops managing transactions (AUTOCOMMIT makes pysqlite,
            # under aiosqlite, send our BEGIN/COMMIT as they are instead of its own implicit BEGIN).
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_LOCK_TIMEOUT_S * 1000}")
            await conn.exec_driver_sql("BEGIN EXCLUSIVE")

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        conn = self._conn
        if conn.dialect.name == "postgresql":
            if exc_type is None:
                await conn.commit()
            else:
                await conn.rollback()
            await conn.execute(sa.select(sa.func.pg_advisory_unlock(POSTGRES_LOCK_KEY)))
            await conn.commit()
        else:
            await conn.exec_driver_sql("COMMIT" if exc_type is None else "ROLLBACK")
            await conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            await conn.commit()


def _one_line(exc: BaseException) -> str:
    """The driver's own message (without SQLAlchemy's statement and background link), on one line."""
    inner = getattr(exc, "orig", None) or exc
    name = inner.__class__.__name__
    text = " ".join(str(inner).split())
    # The async drivers' adapters wrap every error in a class named plain `Error`: say only the message.
    return text if text and name == "Error" else f"{name}: {text or '-'}"
