"""Revision 0005 (session_participants, access_notices) upgrades a revision-0004 database with its rows,
on SQLite and PostgreSQL: sessions keep working, and their starters may follow up under FOLLOW_UPS=participants."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from bot.domain import Incoming, ThreadKey
from bot.store import Store
from bot.store.engine import create_engine
from bot.store.migrate import BASELINE_REVISION, MIGRATIONS_DIR, current_revision, head_revision
from tests.store.test_migrations import OLD_THREAD, old_database, schema_differences

__all__ = ["old_database"]  # the fixture, shared with test_migrations

# A second session, added at revision 0004: started by U0002, followed up by U0003.
OTHER_THREAD = ThreadKey("T0001", "C0001", "1732600000.000100")


async def migrate_to(url: str, revision: str) -> None:
    """Stamp a pre-Alembic database at the baseline and upgrade it to `revision` (not to head)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:

            def run(sync_conn: sa.Connection) -> None:
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS_DIR))
                config.attributes["connection"] = sync_conn
                command.stamp(config, BASELINE_REVISION)
                command.upgrade(config, revision)

            await conn.run_sync(run)
            now = 1732600000.0
            await conn.execute(
                sa.text(
                    "INSERT INTO sessions (team_id, channel, thread_ts, root_checked, created_at, updated_at)"
                    " VALUES ('T0001', 'C0001', '1732600000.000100', true, :now, :now)"
                ),
                {"now": now},
            )
            for ts, user in (("1732600000.000100", "U0002"), ("1732600001.000100", "U0003")):
                await conn.execute(
                    sa.text(
                        "INSERT INTO turns (team_id, channel, ts, thread_ts, user_id, text, files_json,"
                        " is_thread_reply, status, attempts, owner, lease_until, created_at, updated_at)"
                        " VALUES ('T0001', 'C0001', :ts, '1732600000.000100', :user, 'q', '[]',"
                        " :reply, 'done', 1, '', 0, :now, :now)"
                    ),
                    {"ts": ts, "user": user, "reply": ts != OTHER_THREAD.thread_ts, "now": now},
                )
    finally:
        await engine.dispose()


def follow_up(thread: ThreadKey, ts: str, user: str) -> Incoming:
    return Incoming(
        thread=thread,
        ts=ts,
        user_id=user,
        text="and by month?",
        files=(),
        is_thread_reply=True,
        starts_session=False,
        requires_participant=True,
    )


async def test_0005_upgrades_a_0004_database_and_makes_each_sessions_starter_a_participant(
    old_database: str,
) -> None:
    await migrate_to(old_database, "0004")
    assert await current_revision(old_database) == "0004"

    store = await Store.open(old_database)
    try:
        assert await store.participants(OLD_THREAD) == {"U0001"}
        assert await store.participants(OTHER_THREAD) == {"U0002"}, "the starter, not a later replier"
        assert await store.session(OTHER_THREAD) is not None
        assert await store.accept_message(follow_up(OTHER_THREAD, "1732600002.000100", "U0002")) is not None
        assert await store.accept_message(follow_up(OTHER_THREAD, "1732600003.000100", "U0003")) is None
        mention = dataclasses.replace(
            follow_up(OTHER_THREAD, "1732600004.000100", "U0003"), starts_session=True, requires_participant=False
        )
        assert await store.accept_message(mention) is not None
        assert await store.participants(OTHER_THREAD) == {"U0002", "U0003"}
        assert await store.claim_access_notice(OTHER_THREAD, "U0009", only_in_session=True)
        assert not await store.claim_access_notice(OTHER_THREAD, "U0009", only_in_session=True)
    finally:
        await store.close()
    assert await current_revision(old_database) == head_revision()
    assert await schema_differences(old_database) == []
