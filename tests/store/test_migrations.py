"""Alembic migrations on real SQLite and PostgreSQL: the pre-Alembic database upgrades in place with its
rows, an empty database gets exactly `tables.metadata`, and processes starting together migrate once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.domain import Incoming, Session, SlackFile, ThreadFile, ThreadKey
from bot.errors import DatabaseUnavailable
from bot.store import Store
from bot.store.engine import create_engine
from bot.store.migrate import POSTGRES_LOCK_KEY, current_revision, head_revision, upgrade
from bot.store.tables import metadata
from tests.conftest import postgres_database

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# The thread and rows of tests/fixtures/db_443c525.* (written by tests/store/make_db_443c525.py).
OLD_THREAD = ThreadKey("T0001", "C0001", "1732500000.000100")


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_url
    else:
        async with postgres_database() as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database as the bot of commit 443c525 left it: its tables (create_all), rows, no alembic_version."""
    if request.param == "sqlite":
        path = tmp_path / "bot.sqlite3"
        shutil.copyfile(FIXTURES / "db_443c525.sqlite3", path)
        yield f"sqlite:///{path}"
    else:
        async with postgres_database() as url:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute((FIXTURES / "db_443c525_postgresql.sql").read_text(encoding="utf-8"))
            finally:
                await conn.close()
            yield url


async def schema_differences(url: str) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match `tables.metadata`."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def compare(sync_conn: sa.Connection) -> list[Any]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


def question(ts: str, *, thread: ThreadKey = OLD_THREAD) -> Incoming:
    return Incoming(
        thread=thread,
        ts=ts,
        user_id="U0001",
        text=f"question {ts}",
        files=(),
        is_thread_reply=True,
        starts_session=False,
    )


async def test_a_database_made_before_migrations_keeps_sessions_files_and_unanswered_turns(old_database: str) -> None:
    assert await current_revision(old_database) is None
    store = await Store.open(old_database)
    try:
        assert await store.session(OLD_THREAD) == Session(
            thread=OLD_THREAD, conversation_id="conv_0001", container_id="cntr_0001", root_checked=True
        )
        assert await store.thread_files(OLD_THREAD) == [
            ThreadFile(
                slack_file_id="F0001",
                openai_file_id="file-0001",
                filename="sales.csv",
                size_bytes=12_345,
                description="CSV, UTF-8, 120 rows × 5 columns",
                sha256="a" * 64,
            ),
            ThreadFile(
                slack_file_id="F0002",
                openai_file_id="file-0002",
                filename="매출_2024.xlsx",
                size_bytes=6_000_000_000,
                description="",
                sha256="b" * 64,
            ),
        ]
        pending, interrupted = await store.unfinished_turns()
        assert (pending.id, pending.ts, pending.attempts, pending.answer_messages) == (2, "1732500100.000300", 0, ())
        assert pending.text == "and by month, with these returns?" and pending.is_thread_reply
        assert pending.files == (
            SlackFile(
                id="F0003",
                name="returns.csv",
                size=2048,
                mimetype="text/csv",
                filetype="csv",
                url="https://files.slack.com/files-pri/T0001-F0003/download/returns.csv",
            ),
        )
        assert (interrupted.id, interrupted.attempts) == (3, 1)
        assert interrupted.answer_messages == ("1732500201.000500",), "0002 carries reply_ts over"
        assert await store.turn_status(1) == "done"
        assert await store.feedback_for("resp_0001") == [("U0001", "helpful")]
        assert not await store.claim_output("cntr_0001", "cfile_0001"), "a delivered output stays delivered"
        new = await store.accept_message(question("1732500300.000600"))
        assert new is not None and new.id == 4, "ids continue after the old rows"
    finally:
        await store.close()
    assert await current_revision(old_database) == head_revision()
    assert await schema_differences(old_database) == []


async def test_an_empty_database_gets_exactly_the_tables_of_the_metadata(empty_database: str) -> None:
    assert await current_revision(empty_database) is None
    await upgrade(empty_database)
    assert await current_revision(empty_database) == head_revision()
    assert await table_names(empty_database) == set(metadata.tables) | {"alembic_version"}
    assert await schema_differences(empty_database) == []


async def test_upgrading_a_current_database_again_changes_nothing(empty_database: str) -> None:
    await upgrade(empty_database)
    engine = create_engine(empty_database)
    statements: list[str] = []
    sa.event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        await upgrade(engine)
        await upgrade(engine)
    finally:
        await engine.dispose()
    assert await current_revision(empty_database) == head_revision()
    # Only reading the recorded revision: no lock taken, nothing written.
    written = [s for s in statements if s.split()[0].upper() not in {"SELECT", "PRAGMA"}]
    assert written == []
    assert not [s for s in statements if "pg_advisory_lock" in s]
    assert await schema_differences(empty_database) == []


@contextlib.asynccontextmanager
async def all_queued_on_the_migration_lock(url: str, *, waiters: int) -> AsyncIterator[None]:
    """On PostgreSQL, hold the migration lock over the body, then release it only once `waiters` other
    connections wait for it: they are all past their first look at the revision, so they race for real.
    On SQLite (no way to see who waits) the body's work just runs."""
    if not url.startswith("postgresql"):
        yield
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", POSTGRES_LOCK_KEY)
        yield
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            < waiters
        ):
            assert loop.time() < deadline, f"{waiters} migrations never queued on the lock"
            await asyncio.sleep(0.05)
        await conn.execute("SELECT pg_advisory_unlock($1)", POSTGRES_LOCK_KEY)
    finally:
        await conn.close()


async def test_three_stores_opening_an_empty_database_at_once_migrate_it_once(empty_database: str) -> None:
    async with all_queued_on_the_migration_lock(empty_database, waiters=3):
        opening = [asyncio.create_task(Store.open(empty_database, owner=f"replica-{i}")) for i in range(3)]
    stores = await asyncio.gather(*opening)
    try:
        assert await current_revision(empty_database) == head_revision()
        thread = ThreadKey("T1", "C1", "1.0")
        first = Incoming(
            thread=thread, ts="1.0", user_id="U1", text="q", files=(), is_thread_reply=False, starts_session=True
        )
        turns = await asyncio.gather(*(store.accept_message(first) for store in stores))
        assert len([t for t in turns if t is not None]) == 1, "one shared schema, one row"
    finally:
        for store in stores:
            await store.close()
    assert await schema_differences(empty_database) == []


async def run_migrate(database_url: str, tmp_path: Path) -> tuple[int, str, str]:
    """`python -m bot migrate` with nothing in its environment but PATH and DATABASE_URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "migrate",
        "--env-file",
        str(tmp_path / "none.env"),
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_three_migrate_processes_started_together_on_an_empty_database_all_succeed(
    empty_database: str, tmp_path: Path
) -> None:
    async with all_queued_on_the_migration_lock(empty_database, waiters=3):
        migrating = [asyncio.create_task(run_migrate(empty_database, tmp_path)) for _ in range(3)]
    results = await asyncio.gather(*migrating)
    for code, out, err in results:
        assert code == 0, err
        assert out.splitlines() == [f"database at revision {head_revision()} (head)"]
        assert "Traceback" not in err
    assert await current_revision(empty_database) == head_revision()
    assert await schema_differences(empty_database) == []


async def test_migrate_on_an_unreachable_database_exits_2_with_one_line(tmp_path: Path) -> None:
    code, out, err = await run_migrate("postgresql://bot:s3cret-pw@127.0.0.1:1/bot", tmp_path)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("database error: cannot connect to"), err
    assert "127.0.0.1:1" in lines[0]
    assert "s3cret-pw" not in err, "the password is never shown"


async def test_a_database_migrated_by_a_newer_bot_is_refused_untouched(empty_database: str) -> None:
    await upgrade(empty_database)
    engine = create_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await engine.dispose()
    with pytest.raises(DatabaseUnavailable, match="revision 9999"):
        await Store.open(empty_database)
    assert await current_revision(empty_database) == "9999"


async def test_turns_recorded_before_usage_tracking_count_towards_budgets(old_database: str) -> None:
    from bot.store.usage import UsageLedger

    store = await Store.open(old_database)
    try:
        ledger = UsageLedger(store.engine)
        day_start = 1732492800.0  # 2024-11-25 00:00 UTC, the day of the fixture's answered turn
        month_start = 1730419200.0  # 2024-11-01 00:00 UTC
        spent = await ledger.spent_usd(
            team_id="T0001",
            channel="C0001",
            user_id="U0001",
            since={"user_daily": day_start, "channel_daily": day_start, "team_monthly": month_start},
        )
        estimate = 1200 * 1.25 / 1_000_000 + 340 * 10.00 / 1_000_000  # its stored tokens at gpt-5.1 rates
        assert spent == pytest.approx({"user_daily": estimate, "channel_daily": estimate, "team_monthly": estimate})
        [report] = await ledger.report(by="user")
        assert (report.key, report.turns, report.cost_usd) == ("U0001", 1, pytest.approx(estimate))
    finally:
        await store.close()


def test_the_head_the_bot_knows_without_alembic_is_alembics_own_head() -> None:
    from alembic.script import ScriptDirectory

    from bot.store.migrate import HEAD_REVISION, _config

    assert ScriptDirectory.from_config(_config()).get_current_head() == HEAD_REVISION


async def test_opening_a_current_database_leaves_alembic_and_asyncpg_unloaded(sqlite_url: str, tmp_path: Path) -> None:
    """A restarted bot only reads the recorded revision: Alembic (and, on SQLite, asyncpg) stays out of memory."""
    await upgrade(sqlite_url)
    script = (
        "import asyncio, sys\n"
        "from bot.store import Store\n"
        "async def main():\n"
        "    store = await Store.open(sys.argv[1])\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('alembic', 'mako', 'asyncpg') if m in sys.modules))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        sqlite_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "[]"
