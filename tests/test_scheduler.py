"""TurnScheduler: per-thread order, stop of the current turn, also while it waits for a free slot."""

from __future__ import annotations

import asyncio

from pytest_mock import MockerFixture

from bot.domain import ThreadKey, Turn
from bot.turn.scheduler import TurnScheduler


def turn(turn_id: int, thread_ts: str) -> Turn:
    return Turn(
        id=turn_id,
        thread=ThreadKey("T1", "C1", thread_ts),
        ts=f"{thread_ts}{turn_id}",
        user_id="U1",
        text="q",
    )


async def test_stop_while_waiting_for_a_slot_reaches_that_turn(mocker: MockerFixture) -> None:
    release, first_running = asyncio.Event(), asyncio.Event()

    async def run(t: Turn, stop: asyncio.Event) -> None:
        if t.id == 1:
            first_running.set()
            await release.wait()

    run_turn = mocker.AsyncMock(side_effect=run)
    scheduler = TurnScheduler(run_turn, max_concurrent=1)
    first, waiting = turn(1, "100.1"), turn(2, "200.1")
    scheduler.submit(first)
    scheduler.submit(waiting)
    await first_running.wait()  # the second worker started before this one was woken: it waits for the slot
    assert scheduler.stop(waiting.thread), "a turn waiting for a slot can be stopped"
    release.set()
    assert await scheduler.wait_idle(5)
    calls = {call.args[0].id: call.args[1] for call in run_turn.await_args_list}
    assert set(calls) == {1, 2}
    assert calls[2].is_set() and not calls[1].is_set()


async def test_stop_with_nothing_queued_returns_false(mocker: MockerFixture) -> None:
    scheduler = TurnScheduler(mocker.AsyncMock(), max_concurrent=1)
    assert not scheduler.stop(ThreadKey("T1", "C1", "1.0"))


async def test_turns_of_one_thread_run_in_order(mocker: MockerFixture) -> None:
    run_turn = mocker.AsyncMock()
    scheduler = TurnScheduler(run_turn, max_concurrent=4)
    for turn_id in (1, 2, 3):
        scheduler.submit(turn(turn_id, "100.1"))
    assert await scheduler.wait_idle(5)
    assert [call.args[0].id for call in run_turn.await_args_list] == [1, 2, 3]
