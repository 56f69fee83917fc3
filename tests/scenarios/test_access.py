"""Who may use it (issue: ALLOWED_TEAMS/CHANNELS/USERS, ALLOW_DMS, ADMIN_CONTACT, FOLLOW_UPS), over the wire.

To show that nothing happened, each test waits until the fake Slack recorded the ack of every delivery
(the listener has decided) and the bot's scheduler is idle, then asserts on what crossed the wire.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import RunningBot, answer_texts, free_port, run_bot
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

CSV = b"region,sales\nSeoul,10\nBusan,7\n"


async def settled(slack: FakeSlack, running: RunningBot) -> None:
    """Every delivery so far was acknowledged and every turn it started is over."""
    await slack.wait_delivered()
    assert await running.bot.scheduler.wait_idle(10)


def turn_rows(database_url: str) -> list[tuple[str, str, str]]:
    """(user, thread_ts, text) of every recorded turn, oldest first."""
    path = Path(database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as db:
        return [tuple(row) for row in db.execute("SELECT user_id, thread_ts, text FROM turns ORDER BY id")]


def work_requests(oai: FakeOpenAI) -> list[str]:
    """OpenAI requests other than the start-up model check."""
    return [f"{r.method} {r.path}" for r in oai.requests if not r.path.startswith("/v1/models")]


def assert_nothing_shown_or_spent(slack: FakeSlack, oai: FakeOpenAI) -> None:
    """No status, reaction, visible message, stream or download at Slack; nothing at OpenAI."""
    for method in (
        "assistant.threads.setStatus",
        "reactions.add",
        "chat.postMessage",
        "chat.update",
        "chat.startStream",
        "files.info",
        "files.getUploadURLExternal",
        "conversations.replies",
    ):
        assert not slack.calls_to(method), method
    assert not slack.file_downloads()
    assert not work_requests(oai)


async def test_refused_user_gets_one_ephemeral_and_nothing_else_happens(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    env = {"ALLOWED_USERS": "U1", "ADMIN_CONTACT": "#data-help"}
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        csv_file = slack.add_file(name="sales.csv", content=CSV, user="U2")
        asked = await slack.user_posts(
            channel="C1", user="U2", text="<@UBOT> what are total sales by region?", files=[csv_file]
        )
        await slack.wait_for(lambda: bool(slack.ephemerals("U2")))
        # Slack redelivers what it thinks was missed: still one answer per message.
        await slack.deliver(slack.events[-1], retry_attempt=1, retry_reason="timeout")
        await settled(slack, running)

    [notice] = slack.calls_to("chat.postEphemeral")
    assert notice.params["user"] == "U2" and notice.params["channel"] == "C1"
    assert "thread_ts" not in notice.params, "a refused top-level mention is answered where it was asked"
    [ephemeral] = slack.ephemerals("U2")
    assert ephemeral.text == "This bot is not enabled for you here. To ask for access, contact #data-help."
    assert not slack.ephemerals("U1")
    assert [m.user for m in slack.thread("C1", asked["ts"])] == ["U2"], "nothing others can see"
    assert_nothing_shown_or_spent(slack, oai)
    assert turn_rows(sqlite_url) == []


async def test_refused_over_http_mode_too(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    env = {"ALLOWED_CHANNELS": "C9"}
    async with run_bot(slack, oai, sqlite_url, mode="http", port=free_port(), env=env) as running:
        await slack.user_posts(channel="C1", user="U1", text="<@UBOT> total sales?")
        await slack.wait_for(lambda: bool(slack.ephemerals("U1")))
        await settled(slack, running)

    assert len(slack.calls_to("chat.postEphemeral")) == 1, "app_mention + message: one reply"
    assert all(status == 200 for status, _ in slack.http_deliveries)
    assert_nothing_shown_or_spent(slack, oai)
    assert turn_rows(sqlite_url) == []


async def test_refusal_is_in_the_askers_language_and_without_contact_when_unset(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url, env={"ALLOWED_USERS": "U1"}) as running:
        await slack.user_posts(channel="C1", user="U2", text="<@UBOT> 지역별 매출 합계는?")
        await slack.wait_for(lambda: bool(slack.ephemerals("U2")))
        await settled(slack, running)

    assert [e.text for e in slack.ephemerals()] == ["이 봇은 여기에서 사용하실 수 있도록 설정되어 있지 않습니다."]
    assert_nothing_shown_or_spent(slack, oai)


async def test_dm_refused_when_dms_are_off(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    env = {"ALLOW_DMS": "false", "ADMIN_CONTACT": "#data-help"}
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        dm = await slack.user_posts(channel="D1", user="U1", text="what is the average rating?")
        await slack.wait_for(lambda: bool(slack.ephemerals("U1")))
        await settled(slack, running)

    [ephemeral] = slack.ephemerals("U1", channel="D1")
    assert "not enabled" in ephemeral.text and "#data-help" in ephemeral.text
    assert [m.user for m in slack.thread("D1", dm["ts"])] == ["U1"]
    assert_nothing_shown_or_spent(slack, oai)
    assert turn_rows(sqlite_url) == []


async def test_dms_count_as_allowed_channels(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url, env={"ALLOWED_CHANNELS": "C2"}) as running:
        dm = await slack.user_posts(channel="D1", user="U1", text="what is the average rating?")
        await slack.wait_for(lambda: len(answer_texts(slack, "D1", dm["ts"])) == 1)
        await slack.user_posts(channel="C1", user="U1", text="<@UBOT> and here?")
        await slack.wait_for(lambda: bool(slack.ephemerals("U1", channel="C1")))
        await settled(slack, running)

    assert [row[0] for row in turn_rows(sqlite_url)] == ["U1"], "only the DM became a turn"


@pytest.mark.parametrize(
    ("env", "answered"),
    [
        pytest.param({"ALLOWED_TEAMS": "T1"}, True, id="team-listed"),
        pytest.param({"ALLOWED_TEAMS": "T9,T8"}, False, id="team-not-listed"),
        pytest.param({"ALLOWED_CHANNELS": "C1"}, True, id="channel-listed"),
        pytest.param({"ALLOWED_CHANNELS": "C2"}, False, id="channel-not-listed"),
        pytest.param({"ALLOWED_USERS": "U2,U1"}, True, id="user-listed"),
        pytest.param({"ALLOWED_USERS": "U2"}, False, id="user-not-listed"),
    ],
)
async def test_each_list(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, env: dict[str, str], answered: bool
) -> None:
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        asked = await slack.user_posts(channel="C1", user="U1", text="<@UBOT> total sales?")
        if answered:
            await slack.wait_for(lambda: len(answer_texts(slack, "C1", asked["ts"])) == 1)
        else:
            await slack.wait_for(lambda: bool(slack.ephemerals("U1")))
        await settled(slack, running)

    assert len(turn_rows(sqlite_url)) == (1 if answered else 0)
    assert len(slack.ephemerals()) == (0 if answered else 1)
    if not answered:
        assert_nothing_shown_or_spent(slack, oai)


async def test_a_user_must_pass_every_list_that_is_set(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    slack.add_channel("C2")
    env = {"ALLOWED_TEAMS": "T1", "ALLOWED_CHANNELS": "C1", "ALLOWED_USERS": "U1"}
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        await slack.user_posts(channel="C2", user="U1", text="<@UBOT> listed user, other channel")
        await slack.user_posts(channel="C1", user="U2", text="<@UBOT> listed channel, other user")
        ok = await slack.user_posts(channel="C1", user="U1", text="<@UBOT> listed user, listed channel")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ok["ts"])) == 1)
        await slack.wait_for(lambda: len(slack.ephemerals()) == 2)
        await settled(slack, running)

    assert sorted((e.user, e.channel) for e in slack.ephemerals()) == [("U1", "C2"), ("U2", "C1")]
    assert [row[2] for row in turn_rows(sqlite_url)] == ["<@UBOT> listed user, listed channel"]


async def test_refused_person_replying_in_a_session_thread_is_told_once(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    env = {"ALLOWED_USERS": "U1"}
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        root = await slack.user_posts(channel="C1", user="U1", text="<@UBOT> total sales?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", root["ts"])) == 1)
        for text in ("and by month?", "what about Busan?", "please answer me"):
            await slack.user_posts(channel="C1", user="U2", text=text, thread_ts=root["ts"])
        await slack.wait_for(lambda: bool(slack.ephemerals("U2")))
        await settled(slack, running)
    # A restart (or another replica) remembers who was told.
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        await slack.user_posts(channel="C1", user="U2", text="still there?", thread_ts=root["ts"])
        await settled(slack, running)

    [ephemeral] = slack.ephemerals("U2")
    assert ephemeral.thread_ts == root["ts"] and ephemeral.channel == "C1"
    assert [row[0] for row in turn_rows(sqlite_url)] == ["U1"]
    assert len(oai.requests_to("POST", "/v1/responses")) == 1
    assert len(answer_texts(slack, "C1", root["ts"])) == 1


async def test_refused_person_replying_where_the_bot_has_no_session_is_ignored(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url, env={"ALLOWED_USERS": "U1"}) as running:
        root = await slack.user_posts(channel="C1", user="U1", text="lunch anyone?")
        await slack.user_posts(channel="C1", user="U2", text="sure, where?", thread_ts=root["ts"])
        await settled(slack, running)

    assert not slack.calls_to("chat.postEphemeral")
    assert_nothing_shown_or_spent(slack, oai)


async def test_follow_ups_from_participants_only(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    slack.add_user("U3", name="user3")
    async with run_bot(slack, oai, sqlite_url, env={"FOLLOW_UPS": "participants"}) as running:
        root = await slack.user_posts(channel="C1", user="U1", text="<@UBOT> total sales?")
        ts = root["ts"]
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        await slack.user_posts(channel="C1", user="U2", text="<@UBOT> and by region?", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
        await slack.user_posts(channel="C1", user="U3", text="what about last year?", thread_ts=ts)
        await slack.user_posts(channel="C1", user="U1", text="starter follows up", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 3)
        await slack.user_posts(channel="C1", user="U2", text="later mentioner follows up", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 4)
        await settled(slack, running)

    assert [(row[0], row[2]) for row in turn_rows(sqlite_url)] == [
        ("U1", "<@UBOT> total sales?"),
        ("U2", "<@UBOT> and by region?"),
        ("U1", "starter follows up"),
        ("U2", "later mentioner follows up"),
    ]
    told_u3 = [c for c in slack.calls_to("chat.postEphemeral") if c.params["user"] == "U3"]
    assert not told_u3, "a non-participant is allowed, just not addressed: not told anything"


async def test_participants_mode_lets_a_newcomer_in_with_a_mention(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    slack.add_user("U3", name="user3")
    async with run_bot(slack, oai, sqlite_url, env={"FOLLOW_UPS": "participants"}) as running:
        root = await slack.user_posts(channel="C1", user="U1", text="<@UBOT> total sales?")
        ts = root["ts"]
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        await slack.user_posts(channel="C1", user="U3", text="<@UBOT> by month?", thread_ts=ts)
        await slack.user_posts(channel="C1", user="U3", text="and by week?", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 3)
        await settled(slack, running)

    assert [row[0] for row in turn_rows(sqlite_url)] == ["U1", "U3", "U3"]


async def test_follow_ups_need_a_mention_in_mention_mode(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url, env={"FOLLOW_UPS": "mention"}) as running:
        root = await slack.user_posts(channel="C1", user="U1", text="<@UBOT> total sales?")
        ts = root["ts"]
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        await slack.user_posts(channel="C1", user="U1", text="and by region?", thread_ts=ts)
        await settled(slack, running)
        assert len(turn_rows(sqlite_url)) == 1, "an un-mentioned reply is not a turn"
        await slack.user_posts(channel="C1", user="U1", text="<@UBOT> and by region?", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
        # DMs: every message is addressed to the bot, so the mode does not restrict them.
        dm = await slack.user_posts(channel="D1", user="U1", text="average rating?")
        await slack.wait_for(lambda: len(answer_texts(slack, "D1", dm["ts"])) == 1)
        await slack.user_posts(channel="D1", user="U1", text="and the worst one?", thread_ts=dm["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "D1", dm["ts"])) == 2)
        await settled(slack, running)

    assert [row[2] for row in turn_rows(sqlite_url)] == [
        "<@UBOT> total sales?",
        "<@UBOT> and by region?",
        "average rating?",
        "and the worst one?",
    ]
    assert not slack.calls_to("chat.postEphemeral")


@pytest.mark.parametrize("follow_ups", ["anyone", "participants", "mention"])
async def test_replies_that_are_not_questions_cost_nothing(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, follow_ups: str
) -> None:
    async with run_bot(slack, oai, sqlite_url, env={"FOLLOW_UPS": follow_ups}) as running:
        root = await slack.user_posts(channel="C1", user="U1", text="<@UBOT> total sales?")
        ts = root["ts"]
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        await settled(slack, running)
        calls_before, requests_before = len(slack.calls), len(oai.requests)
        for text in (":+1:", "👍", "thanks", "고마워", "ㅇㅋ", "k", "<@UBOT> 고마워!", "<@UBOT> :tada:"):
            await slack.user_posts(channel="C1", user="U1", text=text, thread_ts=ts)
        await slack.user_posts(channel="C1", user="U1", text="<@UBOT> 👍")  # a new top-level mention, too
        await settled(slack, running)
        assert slack.calls[calls_before:] == [], "nothing sent to Slack"
        assert oai.requests[requests_before:] == [], "nothing sent to OpenAI"
        assert len(turn_rows(sqlite_url)) == 1

        # A file with a short text is still a question.
        csv_file = slack.add_file(name="sales.csv", content=CSV)
        await slack.user_posts(channel="C1", user="U1", text="<@UBOT> k", thread_ts=ts, files=[csv_file])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
        await settled(slack, running)

    assert [row[2] for row in turn_rows(sqlite_url)] == ["<@UBOT> total sales?", "<@UBOT> k"]
