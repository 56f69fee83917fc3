"""Writes tests/fixtures/db_443c525.* : a database as the bot of commit 443c525 left it (kept as documentation).

That bot created its tables with `metadata.create_all`; this script takes the table definitions from
that commit's `bot/store.py` (through `git show`), creates them the same way, and inserts one of each
kind of row the upgrade must keep. Run once from the repository root, with PostgreSQL on 127.0.0.1:

    python -m tests.store.make_db_443c525

The PostgreSQL fixture is `pg_dump --no-owner --no-privileges --inserts` of the same database, without
the `\\restrict` lines newer pg_dump versions add (psql meta-commands, not SQL).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

COMMIT = "443c525"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# A file shared with the unanswered question, as that bot's acceptor stored it (`SlackFile.to_json`).
PENDING_FILE = {
    "id": "F0003",
    "name": "returns.csv",
    "size": 2048,
    "mimetype": "text/csv",
    "filetype": "csv",
    "url_private_download": "https://files.slack.com/files-pri/T0001-F0003/download/returns.csv",
    "mode": "hosted",
    "is_external": False,
    "external_type": "",
}


def old_metadata() -> sa.MetaData:
    source = subprocess.run(["git", "show", f"{COMMIT}:bot/store.py"], check=True, capture_output=True, text=True)
    text = source.stdout
    tables = text[text.index("metadata = sa.MetaData()") : text.index("UNFINISHED = ")]
    namespace: dict[str, Any] = {"sa": sa}
    exec(tables, namespace)
    metadata = namespace["metadata"]
    assert isinstance(metadata, sa.MetaData)
    return metadata


def rows(md: sa.MetaData) -> list[tuple[sa.Table, dict[str, Any]]]:
    thread = {"team_id": "T0001", "channel": "C0001", "thread_ts": "1732500000.000100"}
    t0 = 1_732_500_000.0
    turn = {
        **thread,
        "user_id": "U0001",
        "files_json": "[]",
        "is_thread_reply": False,
        "owner": "bot-7d9f",
        "lease_until": 0.0,
        "created_at": t0,
        "updated_at": t0,
    }
    file = {**thread, "description": "", "created_at": t0}
    return [
        (
            md.tables["sessions"],
            {
                **thread,
                "conversation_id": "conv_0001",
                "container_id": "cntr_0001",
                "root_checked": True,
                "created_at": t0,
                "updated_at": t0 + 30,
            },
        ),
        (
            md.tables["thread_files"],
            {
                **file,
                "slack_file_id": "F0001",
                "openai_file_id": "file-0001",
                "filename": "sales.csv",
                "size_bytes": 12_345,
                "description": "CSV, UTF-8, 120 rows × 5 columns",
                "sha256": "a" * 64,
            },
        ),
        (
            md.tables["thread_files"],
            {
                **file,
                "slack_file_id": "F0002",
                "openai_file_id": "file-0002",
                "filename": "매출_2024.xlsx",
                "size_bytes": 6_000_000_000,
                "sha256": "b" * 64,
                "created_at": t0 + 1,
            },
        ),
        (
            md.tables["turns"],
            {
                **turn,
                "ts": "1732500000.000100",
                "text": "<@UBOT> total sales by region?",
                "files_json": '[{"id": "F0001", "name": "sales.csv", "size": 12345}]',
                "status": "done",
                "attempts": 1,
                "reply_ts": "1732500001.000200",
                "response_id": "resp_0001",
                "outcome": "answered",
                "model": "gpt-5.1",
                "input_tokens": 1200,
                "output_tokens": 340,
                "duration_s": 12.5,
            },
        ),
        (
            md.tables["turns"],
            {
                **turn,
                "ts": "1732500100.000300",
                "text": "and by month, with these returns?",
                "files_json": json.dumps([PENDING_FILE]),
                "is_thread_reply": True,
                "status": "pending",
            },
        ),
        (
            md.tables["turns"],
            {
                **turn,
                "ts": "1732500200.000400",
                "text": "draw it as a chart",
                "is_thread_reply": True,
                "status": "running",
                "attempts": 1,
                "lease_until": t0 + 260,
                "reply_ts": "1732500201.000500",
            },
        ),
        (
            md.tables["feedback"],
            {
                **thread,
                "message_ts": "1732500001.000200",
                "user_id": "U0001",
                "response_id": "resp_0001",
                "rating": "helpful",
                "created_at": t0 + 20,
            },
        ),
        (md.tables["delivered_outputs"], {"container_id": "cntr_0001", "file_id": "cfile_0001", "created_at": t0 + 12}),
    ]


async def fill(url: str) -> None:
    """What the old bot did at start-up (create_all), then one of each row."""
    md = old_metadata()
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        # That bot ran its SQLite file in WAL mode (recorded in the file itself).
        sa.event.listen(
            engine.sync_engine, "connect", lambda dbapi_conn, _: dbapi_conn.execute("PRAGMA journal_mode=WAL")
        )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(md.create_all)
            for table, values in rows(md):
                await conn.execute(sa.insert(table).values(**values))
    finally:
        await engine.dispose()


async def main() -> None:
    sqlite_path = FIXTURES / "db_443c525.sqlite3"
    sqlite_path.unlink(missing_ok=True)
    await fill(f"sqlite+aiosqlite:///{sqlite_path}")

    name = f"fixture_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await fill(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
        done = await asyncio.to_thread(
            subprocess.run,
            ["pg_dump", "--no-owner", "--no-privileges", "--inserts", "-h", "127.0.0.1", "-U", "postgres", name],
            check=True,
            capture_output=True,
            text=True,
        )
        dump = done.stdout
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    lines = [line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))]
    header = f"-- The database of commit {COMMIT}'s bot (metadata.create_all) with one of each row.\n"
    header += "-- Made by tests/store/make_db_443c525.py; loaded by tests/store/test_migrations.py.\n"
    (FIXTURES / "db_443c525_postgresql.sql").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
