"""Revision 0006 (OAuth): a database at 0005 keeps its rows and gains slack_sdk's installation and state tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.oauth.installation_store import Installation

from bot.slack.oauth import installation_store, state_store
from bot.store import Store
from bot.store.migrate import current_revision, head_revision, upgrade
from tests.conftest import postgres_database
from tests.store.test_migration_0004_retention import THREAD, at_revision
from tests.store.test_migrations import schema_differences


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    else:
        async with postgres_database() as url:
            yield url


async def test_upgrade_from_0005_keeps_the_session_and_stores_installations(database: str) -> None:
    await at_revision(database, "0005")
    assert await current_revision(database) == "0005"
    await upgrade(database)
    assert await current_revision(database) == head_revision()
    assert await schema_differences(database) == []

    store = await Store.open(database)
    try:
        session = await store.session(THREAD)
        assert session is not None and session.conversation_id == "conv_1", "the session survives the upgrade"
        installations = installation_store(store.engine, client_id="111.222")
        await installations.async_save(
            Installation(
                app_id="A1",
                team_id="T9",
                team_name="Nine",
                bot_token="xoxb-nine",
                bot_id="B9",
                bot_user_id="U9",
                bot_scopes="chat:write",
                user_id="U1",
            )
        )
        bot = await installations.async_find_bot(enterprise_id=None, team_id="T9")
        assert bot is not None and bot.bot_token == "xoxb-nine"
        states = state_store(store.engine)
        state = await states.async_issue()
        assert await states.async_consume(state) is True
        assert await states.async_consume(state) is False, "a state is good for one use"
    finally:
        await store.close()
