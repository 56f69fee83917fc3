"""Revision 0004 (retention): a database at the previous head keeps its rows and gains the retention tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from bot.domain import ThreadKey
from bot.store import Store
from bot.store.engine import create_engine
from bot.store.migrate import _config, current_revision, head_revision, upgrade
from tests.conftest import postgres_database
from tests.store.test_migrations import schema_differences

THREAD = ThreadKey("T1", "C1", "1700000000.000100")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    else:
        async with postgres_database() as url:
            yield url


async def at_revision(url: str, revision: str) -> None:
    """Migrate an empty database to `revision` and give it one thread's session and turn."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:

            def run(sync_conn: sa.Connection) -> None:
                config = _config()
                config.attributes["connection"] = sync_conn
                command.upgrade(config, revision)

            await conn.run_sync(run)
            await conn.execute(
                sa.text(
                    "INSERT INTO sessions (team_id, channel, thread_ts, conversation_id, container_id, root_checked,"
                    " created_at, updated_at) VALUES ('T1', 'C1', '1700000000.000100', 'conv_1', 'cntr_1', true, 1, 1)"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO turns (team_id, channel, ts, thread_ts, user_id, text, files_json, is_thread_reply,"
                    " status, attempts, owner, lease_until, response_id, created_at, updated_at) VALUES ('T1', 'C1',"
                    " '1700000000.000100', '1700000000.000100', 'U1', 'hello', '[]', false, 'done', 1, '', 0,"
                    " 'resp_1', 1, 1)"
                )
            )
    finally:
        await engine.dispose()


async def test_upgrade_from_0003_keeps_the_session_and_adds_retention(database: str) -> None:
    await at_revision(database, "0003")
    assert await current_revision(database) == "0003"
    await upgrade(database)
    assert await current_revision(database) == head_revision()
    assert await schema_differences(database) == []

    store = await Store.open(database)
    try:
        session = await store.session(THREAD)
        assert session is not None and session.conversation_id == "conv_1", "the session survives the upgrade"
        detached = await store.retention.detach(THREAD)
        assert detached.threads == [THREAD]
        assert dict(detached.queued) == {"container": 1, "conversation": 1, "response": 1}
        tombstone = await store.retention.tombstone(THREAD)
        assert tombstone is not None and tombstone.reason == "forget"
    finally:
        await store.close()
