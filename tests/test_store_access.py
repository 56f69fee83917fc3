"""Store: session participants (FOLLOW_UPS=participants) and access notices, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.domain import Incoming, ThreadKey
from bot.store import Store
from tests.conftest import postgres_database

THREAD = ThreadKey("T1", "C1", "1.0")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = await Store.open(sqlite_url)
        yield opened
        await opened.close()
    else:
        async with postgres_database() as url:
            opened = await Store.open(url)
            yield opened
            await opened.close()


def message(ts: str, user: str, *, mention: bool, only_participants: bool = False) -> Incoming:
    return Incoming(
        thread=THREAD,
        ts=ts,
        user_id=user,
        text=("<@UBOT> " if mention else "") + f"question {ts}",
        files=(),
        is_thread_reply=ts != THREAD.thread_ts,
        starts_session=mention,
        requires_participant=only_participants,
    )


async def test_starter_and_mentioners_become_participants(store: Store) -> None:
    assert await store.accept_message(message("1.0", "U1", mention=True)) is not None
    assert await store.accept_message(message("2.0", "U2", mention=False)) is not None, "FOLLOW_UPS=anyone"
    assert await store.participants(THREAD) == {"U1"}, "an un-mentioned reply does not make a participant"
    assert await store.accept_message(message("3.0", "U2", mention=True)) is not None
    assert await store.participants(THREAD) == {"U1", "U2"}


async def test_only_participants_follow_up_when_asked(store: Store) -> None:
    await store.accept_message(message("1.0", "U1", mention=True))
    assert await store.accept_message(message("2.0", "U3", mention=False, only_participants=True)) is None
    assert await store.accept_message(message("3.0", "U1", mention=False, only_participants=True)) is not None
    # A mention and a quick follow-up committed in one batch: the mention makes the participant.
    mention, follow_up = await asyncio.gather(
        store.accept_message(message("4.0", "U4", mention=True)),
        store.accept_message(message("5.0", "U4", mention=False, only_participants=True)),
    )
    assert mention is not None and follow_up is not None
    assert [t.ts for t in await store.unfinished_turns()] == ["1.0", "3.0", "4.0", "5.0"]


async def test_an_access_notice_is_claimed_once(store: Store) -> None:
    assert not await store.claim_access_notice(THREAD, "U9", only_in_session=True), "no session: not ours"
    await store.accept_message(message("1.0", "U1", mention=True))
    claims = await asyncio.gather(*(store.claim_access_notice(THREAD, "U9", only_in_session=True) for _ in range(3)))
    assert sorted(claims) == [False, False, True]
    assert await store.claim_access_notice(THREAD, "U8", only_in_session=True), "another person is told too"
    refused_mention = ThreadKey("T1", "C1", "7.0")
    assert await store.claim_access_notice(refused_mention, "U9", only_in_session=False)
    assert not await store.claim_access_notice(refused_mention, "U9", only_in_session=False)
