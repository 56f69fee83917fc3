"""Store and its group-commit acceptor against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
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


class Clock:
    """The stores' clock, moved by the test instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


LEASE_S = 60.0


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[Store, Store, Clock]]:
    """Two processes' stores on one database, sharing a clock the test moves."""
    clock = Clock()
    a = await Store.open(database_url, owner="replica-a", lease_s=LEASE_S, clock=clock)
    b = await Store.open(database_url, owner="replica-b", lease_s=LEASE_S, clock=clock)
    try:
        yield a, b, clock
    finally:
        await a.close()
        await b.close()


async def test_a_renewed_claim_is_never_taken_and_an_expired_one_once(replicas: tuple[Store, Store, Clock]) -> None:
    a, b, clock = replicas
    turn = await a.accept_message(message("1.0"))
    assert turn is not None
    assert await b.claim_unfinished_turns() == [], "replica a holds it while it lives"
    assert await a.claim_unfinished_turns() == [], "a claim round never re-claims a turn its process holds"
    clock.advance(LEASE_S * 0.9)
    assert await a.renew_leases({turn.id}) == {turn.id}
    clock.advance(LEASE_S * 0.9)
    assert await b.claim_unfinished_turns() == [], "renewed in time"
    clock.advance(LEASE_S + 1)  # replica a died: no renewal
    assert [t.id for t in await b.claim_unfinished_turns()] == [turn.id]
    assert await b.claim_unfinished_turns() == [] and await a.claim_unfinished_turns() == [], "claimed once"


async def test_a_process_that_lost_its_claim_can_neither_start_nor_finish_the_turn(
    replicas: tuple[Store, Store, Clock],
) -> None:
    a, b, clock = replicas
    turn = await a.accept_message(message("1.0"))
    assert turn is not None
    assert await a.start_turn(turn.id) == 1
    clock.advance(LEASE_S + 1)  # a stalled past its lease
    assert [t.id for t in await b.claim_unfinished_turns()] == [turn.id]
    assert await a.renew_leases({turn.id}) == set(), "a learns it lost the turn"
    assert await a.start_turn(turn.id) is None
    assert await a.finish_turn(turn.id, status="done", outcome="completed") is False
    assert await b.turn_status(turn.id) == "running", "a's late finish changed nothing"
    assert await b.start_turn(turn.id) == 2
    assert await b.finish_turn(turn.id, status="done", outcome="completed") is True


async def test_a_finished_turn_is_never_claimed_or_started_again(replicas: tuple[Store, Store, Clock]) -> None:
    a, b, clock = replicas
    turn = await a.accept_message(message("1.0"))
    assert turn is not None
    assert await a.start_turn(turn.id) == 1
    assert await a.finish_turn(turn.id, status="done", outcome="completed") is True
    clock.advance(LEASE_S * 10)
    assert await b.claim_unfinished_turns() == [] and await a.claim_unfinished_turns() == []
    assert await a.start_turn(turn.id) is None, "finishing twice or re-running is refused"
    assert await a.finish_turn(turn.id, status="failed", outcome="late") is False
    assert await a.turn_status(turn.id) == "done"


async def test_turns_a_process_no_longer_holds_expire_and_are_claimed_again(
    replicas: tuple[Store, Store, Clock],
) -> None:
    a, _b, clock = replicas
    held = await a.accept_message(message("1.0"))
    dropped = await a.accept_message(message("2.0"))  # e.g. its start failed on a database error
    assert held is not None and dropped is not None
    clock.advance(LEASE_S * 0.9)
    assert await a.renew_leases({held.id}) == {held.id}
    clock.advance(LEASE_S * 0.2)
    assert [t.id for t in await a.claim_unfinished_turns()] == [dropped.id], "any process, this one too"


async def test_released_turns_are_taken_at_once(replicas: tuple[Store, Store, Clock]) -> None:
    a, b, _clock = replicas
    turn = await a.accept_message(message("1.0"))
    assert turn is not None
    await a.release_leases()  # clean shutdown
    assert [t.id for t in await b.claim_unfinished_turns()] == [turn.id]
    assert await a.claim_unfinished_turns() == [], "now b's"


async def test_every_process_gets_its_own_default_name(database_url: str) -> None:
    first, second = await Store.open(database_url), await Store.open(database_url)
    try:
        assert first.owner != second.owner
        assert str(os.getpid()) in first.owner
    finally:
        await first.close()
        await second.close()


async def test_answer_messages_are_kept_with_the_turn(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        turn = await store.accept_message(message("1.0"))
        assert turn is not None and turn.answer_messages == ()
        await store.set_answer_messages(turn.id, ["5.0", "6.0"])
        store_turns = await store.unfinished_turns()
        assert [t.answer_messages for t in store_turns] == [("5.0", "6.0")]
    finally:
        await store.close()


async def test_a_failing_statement_never_shows_its_parameters(database_url: str) -> None:
    """Database errors reach the log: the message text a statement carried must not be in them."""
    import sqlalchemy as sa

    from bot.store.engine import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE notes (body TEXT NOT NULL UNIQUE)"))
            await conn.execute(sa.text("INSERT INTO notes VALUES (:body)"), {"body": "매출 비밀 메모"})
        with pytest.raises(sa.exc.IntegrityError) as failed:
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO notes VALUES (:body)"), {"body": "매출 비밀 메모"})
    finally:
        await engine.dispose()
    assert "INSERT INTO notes" in str(failed.value)
    assert "매출 비밀 메모" not in str(failed.value)
