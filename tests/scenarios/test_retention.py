"""Data that leaves when asked: the retention sweep, `forget` in a thread, and what a later reply sees."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from bot.analysis.workspace import Workspace
from bot.governance.retention import Forgetter
from bot.store import Store
from bot.store.tables import openai_deletions, sessions, thread_files, thread_tombstones, turns
from tests.conftest import answer_texts, bot_replies, postgres_database, run_bot, user_file_ids, user_uploads
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack

CSV = b"region,sales\nNorth,10\nSouth,7\n"
DAY_S = 86_400


class Clock:
    """The store's clock: real time plus an offset the test moves instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def ask_with_csv(slack: FakeSlack, text: str = "<@UBOT> 지역별 매출을 요약해줘") -> str:
    csv_file = slack.add_file(name="sales.csv", content=CSV)
    return str((await slack.user_posts(channel="C1", text=text, files=[csv_file]))["ts"])


async def answered(slack: FakeSlack, running: object, ts: str, count: int) -> None:
    await slack.wait_for(lambda: len([t for t in answer_texts(slack, "C1", ts) if t.startswith("Echo:")]) >= count)
    assert await running.bot.scheduler.wait_idle(10)  # type: ignore[attr-defined]


async def rows(store: Store, table: sa.Table) -> list[sa.Row]:
    async with store._engine.connect() as conn:  # the test reads the tables as they are
        return list((await conn.execute(sa.select(table))).all())


def live_objects(oai: FakeOpenAI) -> dict[str, int]:
    """The thread objects OpenAI still holds (the deployment's chart font is shared by all threads and stays)."""
    return {
        "files": len(user_file_ids(oai, list(oai.files))),
        "containers": len(oai.containers),
        "conversations": sum(not c["deleted"] for c in oai.conversations.values()),
        "responses": len(oai.responses),
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_idle_thread_is_swept_at_openai_and_in_the_database(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, clock: Clock
) -> None:
    store = await Store.open(sqlite_url, clock=clock)
    async with run_bot(slack, oai, sqlite_url, store=store, env={"RETENTION_DAYS": "30"}) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, ts, 1)
        assert live_objects(oai) == {"files": 1, "containers": 1, "conversations": 1, "responses": 1}
        conversation = next(iter(oai.conversations))

        fresh = await running.bot.sweeper.forgetter.sweep(30)
        assert fresh.threads == 0, "a thread touched today is not idle"

        clock.offset = 31 * DAY_S
        swept = await running.bot.sweeper.forgetter.sweep(30)

        assert swept.threads == 1 and swept.failed == 0
        assert (swept.files, swept.containers, swept.conversations, swept.responses) == (1, 1, 1, 1)
        assert live_objects(oai) == {"files": 0, "containers": 0, "conversations": 0, "responses": 0}
        assert oai.conversations[conversation]["items"] == [], "the conversation's items are deleted first"
        for path in ("/v1/files/", "/v1/containers/", "/v1/conversations/", "/v1/responses/"):
            assert oai.requests_to("DELETE", path), path
        assert await rows(store, sessions) == [] and await rows(store, thread_files) == []
        assert await rows(store, openai_deletions) == []
        (tombstone,) = await rows(store, thread_tombstones)
        assert (tombstone.channel, tombstone.thread_ts, tombstone.reason, tombstone.idle_days) == (
            "C1",
            ts,
            "retention",
            30.0,
        )
        (turn,) = await rows(store, turns)
        assert turn.text == "" and turn.files_json == "[]", "the user's words go too"
        assert turn.input_tokens is not None, "usage stays for accounting"


async def test_a_later_reply_in_a_swept_thread_is_told_and_starts_fresh(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, clock: Clock
) -> None:
    store = await Store.open(sqlite_url, clock=clock)
    async with run_bot(slack, oai, sqlite_url, store=store, env={"RETENTION_DAYS": "30"}) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, ts, 1)
        first_conversation = oai.requests_to("POST", "/v1/responses")[0].json["conversation"]
        clock.offset = 31 * DAY_S
        await running.bot.sweeper.forgetter.sweep(30)

        # No mention: before the sweep this counted because the thread had a session; now the tombstone.
        await slack.user_posts(channel="C1", text="북부만 다시 보여줘", thread_ts=ts)
        await answered(slack, running, ts, 2)
        texts = answer_texts(slack, "C1", ts)
        notice = "이 스레드의 이전 분석 데이터는 30일 동안 사용이 없어 삭제되었습니다"
        assert sum(notice in t for t in texts) == 1
        assert texts.index(next(t for t in texts if notice in t)) < len(texts) - 1, "the notice comes first"
        second = oai.requests_to("POST", "/v1/responses")[1].json
        assert second["conversation"] != first_conversation, "a fresh session, not a model without memory"
        assert len(user_uploads(oai)) == 1, "the root's file is not pulled back in"

        await slack.user_posts(channel="C1", text="남부는?", thread_ts=ts)
        await answered(slack, running, ts, 3)
        assert sum(notice in t for t in answer_texts(slack, "C1", ts)) == 1, "said once"


async def test_thread_with_a_pending_turn_is_not_swept(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, clock: Clock
) -> None:
    hold = asyncio.Event()
    store = await Store.open(sqlite_url, clock=clock)
    async with run_bot(slack, oai, sqlite_url, store=store) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, ts, 1)
        oai.scripts.append(Script(text="Echo: long", hold=hold))
        await slack.user_posts(channel="C1", text="더 자세히", thread_ts=ts)
        await oai.wait_for(lambda: oai.active_streams == 1)
        clock.offset = 31 * DAY_S
        swept = await running.bot.sweeper.forgetter.sweep(30)
        assert swept.threads == 0
        assert len(await rows(store, sessions)) == 1
        assert live_objects(oai)["conversations"] == 1
        hold.set()
        await answered(slack, running, ts, 2)


async def test_404_counts_as_deleted_and_a_500_is_retried_next_sweep(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, clock: Clock
) -> None:
    store = await Store.open(sqlite_url, clock=clock)
    async with run_bot(slack, oai, sqlite_url, store=store) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, ts, 1)
        forgetter = running.bot.sweeper.forgetter
        oai.containers.clear()  # the container expired and is gone at OpenAI: DELETE answers 404
        file_id = next(iter(oai.files))
        oai.fail_next(
            f"/v1/files/{file_id}",
            method="DELETE",
            status=500,
            code="server_error",
            message="The server had an error while processing your request.",
            headers={"x-should-retry": "false"},
        )
        clock.offset = 31 * DAY_S
        first = await forgetter.sweep(30)
        assert first.threads == 1 and first.containers == 1, "a 404 is done"
        assert first.failed == 1 and file_id in oai.files
        (left,) = await rows(store, openai_deletions)
        assert (left.kind, left.object_id, left.attempts) == ("file", file_id, 1)

        # The bot keeps answering meanwhile (a new thread).
        other = await ask_with_csv(slack, "<@UBOT> 다른 질문")
        await answered(slack, running, other, 1)

        clock.offset += 3600
        second = await forgetter.sweep(30)
        assert second.files == 1 and second.failed == 0 and file_id not in oai.files
        assert await rows(store, openai_deletions) == []


async def test_startup_sweep_runs_and_zero_keeps_everything(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, clock: Clock
) -> None:
    store = await Store.open(sqlite_url, clock=clock)
    async with run_bot(slack, oai, sqlite_url, store=store) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, ts, 1)
    clock.offset = 3650 * DAY_S

    keep = await Store.open(sqlite_url, clock=clock)
    async with run_bot(slack, oai, sqlite_url, store=keep, env={"RETENTION_DAYS": "0"}) as running:
        await running.bot.sweeper.wait_sweeps(1)
    assert live_objects(oai)["conversations"] == 1
    check = await Store.open(sqlite_url)
    try:
        assert len(await rows(check, sessions)) == 1
    finally:
        await check.close()

    sweeping = await Store.open(sqlite_url, clock=clock)
    async with run_bot(slack, oai, sqlite_url, store=sweeping, env={"RETENTION_DAYS": "0.5"}) as running:
        await running.bot.sweeper.wait_sweeps(1)
        assert live_objects(oai) == {"files": 0, "containers": 0, "conversations": 0, "responses": 0}
        assert await rows(sweeping, sessions) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("forget", "Deleted this thread's data: 1 file(s), 1 conversation(s), 1 container(s)", id="en"),
        pytest.param(
            "<@UBOT> 잊어줘",
            "이 스레드의 데이터를 삭제했습니다: 파일 1개, 대화 1개, 분석 환경(컨테이너) 1개",
            id="ko-mention",
        ),
    ],
)
async def test_forget_deletes_the_thread_and_confirms_the_counts(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, text: str, expected: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask_with_csv(slack)
        await answered(slack, running, ts, 1)
        await slack.user_posts(channel="C1", text=text, thread_ts=ts)
        await slack.wait_for(lambda: any(expected in t for t in answer_texts(slack, "C1", ts)))
        await slack.wait_delivered()
        assert live_objects(oai) == {"files": 0, "containers": 0, "conversations": 0, "responses": 0}
        assert await rows(running.bot.store, sessions) == []
        (tombstone,) = await rows(running.bot.store, thread_tombstones)
        assert tombstone.reason == "forget" and tombstone.idle_days is None
        assert len(oai.requests_to("POST", "/v1/responses")) == 1, "the forget word is not a question"

        await slack.user_posts(channel="C1", text="<@UBOT> again please", thread_ts=ts)
        await answered(slack, running, ts, 2)
    texts = answer_texts(slack, "C1", ts)
    assert sum(expected in t for t in texts) == 1, "a mention arrives twice but is confirmed once"
    assert any("deleted on request" in t for t in texts), "the next reply is told and starts fresh"
    assert (
        oai.requests_to("POST", "/v1/responses")[1].json["conversation"]
        != oai.requests_to("POST", "/v1/responses")[0].json["conversation"]
    )


async def test_forget_during_a_running_turn_stops_it_then_deletes(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="아주 긴 분석을 시작합니다 " * 3, hold=hold))
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = await ask_with_csv(slack)
        await slack.wait_for(lambda: oai.active_streams == 1 and any(m.text for m in bot_replies(slack, "C1", ts)))
        await slack.user_posts(channel="C1", text="잊어줘", thread_ts=ts)
        await slack.wait_for(lambda: any("데이터를 삭제했습니다" in t for t in answer_texts(slack, "C1", ts)))
        texts = answer_texts(slack, "C1", ts)
        stopped = next(i for i, t in enumerate(texts) if "중지했습니다" in t)
        confirmed = next(i for i, t in enumerate(texts) if "데이터를 삭제했습니다" in t)
        assert stopped < confirmed, "the turn stops first, then the data goes"
        assert live_objects(oai)["conversations"] == 0 and live_objects(oai)["files"] == 0
        (turn,) = await rows(running.bot.store, turns)
        assert turn.status == "done" and turn.text == ""
    hold.set()


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        pytest.param("<@UBOT> forget", "There is nothing to forget in this thread.", id="en"),
        pytest.param("<@UBOT> 잊어줘", "이 스레드에는 지울 분석 세션이 없습니다.", id="ko"),
    ],
)
async def test_forget_without_a_session_says_so_and_does_nothing_else(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, text: str, reply: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        top = await slack.user_posts(channel="C1", text="team chat, not for the bot")
        await slack.user_posts(channel="C1", text="forget", thread_ts=top["ts"])  # not addressed: ignored
        await slack.user_posts(channel="C1", text=text, thread_ts=top["ts"])
        await slack.wait_for(lambda: reply in answer_texts(slack, "C1", top["ts"]))
        await slack.wait_delivered()
        assert await rows(running.bot.store, thread_tombstones) == []
        assert await rows(running.bot.store, sessions) == []
    assert answer_texts(slack, "C1", top["ts"]) == [reply]
    assert not [r for r in oai.requests if r.method in {"POST", "DELETE"}]


async def test_sweep_on_postgresql_skips_nothing_and_locks_rows(
    slack: FakeSlack, oai: FakeOpenAI, clock: Clock
) -> None:
    async with postgres_database() as url:
        store = await Store.open(url, clock=clock)
        async with run_bot(slack, oai, url, store=store) as running:
            first = await ask_with_csv(slack)
            second = await ask_with_csv(slack, "<@UBOT> 두 번째")
            await answered(slack, running, first, 1)
            await answered(slack, running, second, 1)
            clock.offset = 31 * DAY_S
            other = await Store.open(url, clock=clock)
            try:
                results = await asyncio.gather(
                    running.bot.sweeper.forgetter.sweep(30),
                    Forgetter(store=other.retention, workspace=Workspace(running.bot.openai_client)).sweep(30),
                )
            finally:
                await other.close()
            assert sum(r.threads for r in results) == 2, "each thread swept once across two sweepers"
            assert live_objects(oai) == {"files": 0, "containers": 0, "conversations": 0, "responses": 0}
            assert len(await rows(store, thread_tombstones)) == 2
