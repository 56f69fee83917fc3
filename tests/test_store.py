"""Store and its group-commit acceptor against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.domain import Incoming, ThreadKey
from bot.store import Store
from tests.conftest import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_url
    else:
        async with postgres_database() as url:
            yield url


def message(ts: str, *, thread_ts: str | None = None, starts: bool = True, channel: str = "C1") -> Incoming:
    return Incoming(
        thread=ThreadKey("T1", channel, thread_ts or ts),
        ts=ts,
        user_id="U1",
        text=f"question {ts}",
        files=(),
        is_thread_reply=thread_ts is not None,
        starts_session=starts,
    )


async def test_a_burst_with_duplicates_is_recorded_once_each_in_order(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        burst = [message(f"{i}.0") for i in range(150)]
        # Each message arrives twice (app_mention + message), all at once.
        results = await asyncio.gather(*(store.accept_message(m) for m in burst + burst))
        firsts, seconds = results[:150], results[150:]
        assert all(turn is not None for turn in firsts)
        assert all(turn is None for turn in seconds)
        ids = [turn.id for turn in firsts if turn is not None]
        assert ids == sorted(ids) and len(set(ids)) == 150
        assert [t.ts for t in await store.unfinished_turns()] == [m.ts for m in burst]
    finally:
        await store.close()


async def test_a_reply_counts_only_in_a_thread_with_a_session(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        assert await store.accept_message(message("2.0", thread_ts="1.0", starts=False)) is None
        mention, follow_up = await asyncio.gather(
            store.accept_message(message("1.0")),
            store.accept_message(message("3.0", thread_ts="1.0", starts=False)),
        )
        assert mention is not None and follow_up is not None
        assert follow_up.thread == mention.thread
        session = await store.session(mention.thread)
        assert session is not None and session.root_checked
    finally:
        await store.close()


async def test_duplicates_are_caught_by_the_database_after_a_restart(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        assert await store.accept_message(message("1.0")) is not None
    finally:
        await store.close()
    store = await Store.open(database_url)
    try:
        assert await store.accept_message(message("1.0")) is None, "a redelivery after restart"
        assert len(await store.unfinished_turns()) == 1
    finally:
        await store.close()


async def test_each_unfinished_turn_is_claimed_by_one_live_process(database_url: str) -> None:
    a = await Store.open(database_url, owner="replica-a", lease_s=0.5)
    b = await Store.open(database_url, owner="replica-b", lease_s=0.5)
    try:
        turn = await a.accept_message(message("1.0"))
        assert turn is not None
        assert await b.claim_unfinished_turns() == [], "replica a holds it while it lives"
        assert [t.id for t in await a.claim_unfinished_turns()] == [turn.id], "its own turns, e.g. after a restart"
        await asyncio.sleep(0.3)
        await a.renew_leases()
        await asyncio.sleep(0.3)
        assert await b.claim_unfinished_turns() == [], "renewed in time"
        await asyncio.sleep(0.6)  # replica a died: no renewal
        assert [t.id for t in await b.claim_unfinished_turns()] == [turn.id]
        assert await a.claim_unfinished_turns() == [], "taken over by b"
    finally:
        await a.close()
        await b.close()


async def test_released_turns_are_taken_at_once(database_url: str) -> None:
    a = await Store.open(database_url, owner="replica-a")
    b = await Store.open(database_url, owner="replica-b")
    try:
        turn = await a.accept_message(message("1.0"))
        assert turn is not None
        await a.release_leases()  # clean shutdown
        claimed = await b.claim_unfinished_turns()
        assert [t.id for t in claimed] == [turn.id]
        assert await a.claim_unfinished_turns() == [], "now b's"
    finally:
        await a.close()
        await b.close()
