"""Revision 0007 (deployment_files) upgrades a revision-0006 database with its rows, on SQLite and PostgreSQL:
sessions and turns stay, and the chart font's upload can be recorded and read back."""

from __future__ import annotations

from bot.store import Store
from bot.store.deployment_files import DeploymentFile, DeploymentFiles
from bot.store.migrate import current_revision, head_revision
from tests.store.test_migration_0005_access import OTHER_THREAD, migrate_to
from tests.store.test_migrations import OLD_THREAD, old_database, schema_differences

__all__ = ["old_database"]  # the fixture, shared with test_migrations


async def test_0007_upgrades_a_0006_database_and_records_deployment_files(old_database: str) -> None:
    await migrate_to(old_database, "0006")
    assert await current_revision(old_database) == "0006"

    store = await Store.open(old_database)
    try:
        assert await store.session(OLD_THREAD) is not None
        assert await store.session(OTHER_THREAD) is not None, "a session added before 0007 is kept"
        files = DeploymentFiles(store.engine)
        assert await files.get("chart_font") is None
        await files.put(DeploymentFile("chart_font", "file-A", "a" * 64))
        await files.put(DeploymentFile("chart_font", "file-B", "b" * 64))
        assert await files.get("chart_font") == DeploymentFile("chart_font", "file-B", "b" * 64)
    finally:
        await store.close()
    assert await current_revision(old_database) == head_revision() == "0007"
    assert await schema_differences(old_database) == []
