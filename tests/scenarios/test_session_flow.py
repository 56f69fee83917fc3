"""What a user does (issue: a Slack thread becomes an OpenAI analysis session), end to end over the wire."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import (
    RunningBot,
    answer_texts,
    bot_replies,
    postgres_database,
    run_bot,
    user_file_ids,
    user_uploads,
)
from tests.fakes.openai_fake import FakeOpenAI, GeneratedFile, Script
from tests.fakes.slack import FakeSlack

REVIEWS_CSV = ("review_id,rating,text\n1,5,배송이 빠르고 좋아요\n2,1,포장이 엉망이에요\n3,4,가격 대비 만족\n").encode()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
QUESTION = "<@UBOT> 이 리뷰 데이터의 주요 키워드와 감성, 장단점을 분석해줘"


def response_posts(oai: FakeOpenAI) -> list[dict]:
    return [r.json for r in oai.requests_to("POST", "/v1/responses")]


async def settled(slack: FakeSlack, running: RunningBot) -> None:
    """Every delivery so far was acknowledged (the listener has decided) and every turn it started is over."""
    await slack.wait_delivered()
    assert await running.bot.scheduler.wait_idle(10)


async def ask_with_csv(slack: FakeSlack, *, channel: str = "C1", text: str = QUESTION) -> dict:
    csv_file = slack.add_file(name="reviews.csv", content=REVIEWS_CSV)
    return await slack.user_posts(channel=channel, text=text, files=[csv_file])


async def test_mention_with_csv_streams_an_answer_and_attaches_the_chart(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts.append(
        Script(
            text="주요 키워드는 배송, 포장입니다. 긍정 2건, 부정 1건.",
            code="import pandas as pd\ndf = pd.read_csv('/mnt/data/reviews.csv')",
            files=[GeneratedFile("sentiment.png", PNG)],
        )
    )
    async with run_bot(slack, oai, sqlite_url):
        message = await ask_with_csv(slack)
        ts = message["ts"]
        await slack.wait_for(lambda: any(m.files for m in bot_replies(slack, "C1", ts)))
        await slack.wait_for(lambda: slack.status("C1", ts) == "")

    # The status indicator came first, in the user's thread.
    status_calls = slack.calls_to("assistant.threads.setStatus")
    assert status_calls and status_calls[0].params["thread_ts"] == ts
    first_status = slack.calls.index(status_calls[0])
    first_stream = slack.calls.index(slack.calls_to("chat.startStream")[0])
    assert first_status < first_stream
    assert "분석" in status_calls[0].params["status"]

    # The answer streamed into the thread with the recipient ids Slack requires in channels.
    start = slack.calls_to("chat.startStream")[0].params
    assert start["thread_ts"] == ts
    assert start["recipient_team_id"] == "T1" and start["recipient_user_id"] == "U1"
    texts = answer_texts(slack, "C1", ts)
    assert len(texts) == 1
    assert texts[0].startswith("주요 키워드는 배송, 포장입니다. 긍정 2건, 부정 1건.")
    assert "sandbox:" not in texts[0]
    assert not slack.channel_root_messages("C1")[1:], "nothing may be posted at the channel root"

    # The chart is attached in the same thread, once.
    shared = [f for m in bot_replies(slack, "C1", ts) for f in m.files]
    assert [f["name"] for f in shared] == ["sentiment.png"]

    # OpenAI: file uploaded as user_data, container holds it, one streamed response with our config.
    uploads = user_uploads(oai)
    assert len(uploads) == 1 and uploads[0].form["purpose"] == "user_data"
    file_id = next(iter(oai.files))
    containers = oai.requests_to("POST", "/v1/containers")
    assert len(containers) == 1 and user_file_ids(oai, containers[0].json["file_ids"]) == [file_id]
    posts = response_posts(oai)
    assert len(posts) == 1, "app_mention + message for one post must give one answer"
    body = posts[0]
    assert body["stream"] is True
    assert body["model"] == "gpt-test"
    assert "data analyst" in body["instructions"]
    assert body["conversation"] in oai.conversations
    container_id = next(iter(oai.containers))
    assert body["tools"][0] == {"type": "code_interpreter", "container": container_id}
    assert [t.get("name") for t in body["tools"][1:]] == ["slack_chart"]
    user_text = body["input"][0]["content"][0]["text"]
    assert "reviews.csv" in user_text and "주요 키워드" in user_text
    assert all(part["type"] == "input_text" for part in body["input"][0]["content"]), "no input_file for CSVs"
    assert not [r for r in oai.requests if r.path.startswith(("/v1/assistants", "/v1/threads"))]


async def test_follow_up_without_mention_continues_the_same_session(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = (await ask_with_csv(slack))["ts"]
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1 and slack.status("C1", ts) == "")
        await slack.user_posts(channel="C1", text="부정 리뷰만 따로 보여줘", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)

    first, second = response_posts(oai)
    assert second["conversation"] == first["conversation"]
    assert second["tools"] == first["tools"], "same live container, same files"
    assert len(user_uploads(oai)) == 1, "the CSV is uploaded once per thread"
    assert "부정 리뷰만 따로 보여줘" in second["input"][0]["content"][0]["text"]
    assert answer_texts(slack, "C1", ts)[1].startswith("Echo:")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_session_survives_a_restart(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, backend: str) -> None:
    async with postgres_database() as pg_url:
        url = sqlite_url if backend == "sqlite" else pg_url
        async with run_bot(slack, oai, url):
            ts = (await ask_with_csv(slack))["ts"]
            await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1 and slack.status("C1", ts) == "")
        # Redeployed: a new process with the same database.
        async with run_bot(slack, oai, url):
            await slack.user_posts(channel="C1", text="부정 리뷰만 따로 보여줘", thread_ts=ts)
            await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)

    first, second = response_posts(oai)
    assert second["conversation"] == first["conversation"]
    assert second["tools"] == first["tools"]
    assert len(user_uploads(oai)) == 1


async def test_expired_container_is_replaced_with_all_files(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url):
        ts = (await ask_with_csv(slack))["ts"]
        await slack.wait_for(lambda: len(slack.calls_to("chat.stopStream")) == 1)
        old_container = next(iter(oai.containers))
        oai.expire_container(old_container)  # an hour later: 20 idle minutes have passed
        await slack.user_posts(channel="C1", text="평점 평균은?", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)

    first, second = response_posts(oai)
    new_container = second["tools"][0]["container"]
    assert new_container != old_container
    file_id = next(iter(oai.files))
    assert user_file_ids(oai, oai.requests_to("POST", "/v1/containers")[-1].json["file_ids"]) == [file_id]
    assert second["conversation"] == first["conversation"]
    assert "restarted" in second["input"][0]["content"][0]["text"]
    assert all("만료" not in t and "expired" not in t for t in answer_texts(slack, "C1", ts))


async def test_csv_posted_earlier_is_found_in_the_thread_root(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        csv_file = slack.add_file(name="reviews.csv", content=REVIEWS_CSV)
        root = await slack.user_posts(channel="C1", text="오늘 받은 리뷰 파일", files=[csv_file])
        await settled(slack, running)
        assert not response_posts(oai), "a top-level post without a mention is not for the bot"
        assert not bot_replies(slack, "C1", root["ts"])
        await slack.user_posts(channel="C1", text="<@UBOT> 이 파일 요약해줘", thread_ts=root["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", root["ts"])) == 1)

    assert len(user_uploads(oai)) == 1
    assert "reviews.csv" in response_posts(oai)[0]["input"][0]["content"][0]["text"]
    assert slack.file_downloads()[0].token == slack.bot_token


async def test_direct_message_threads_are_sessions(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url):
        csv_file = slack.add_file(name="reviews.csv", content=REVIEWS_CSV)
        dm = await slack.user_posts(channel="D1", text="what is the average rating?", files=[csv_file])
        await slack.wait_for(lambda: len(answer_texts(slack, "D1", dm["ts"])) == 1)
        await slack.user_posts(channel="D1", text="and the worst review?", thread_ts=dm["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "D1", dm["ts"])) == 2)
        other = await slack.user_posts(channel="D1", text="new question without a file")
        await slack.wait_for(lambda: len(answer_texts(slack, "D1", other["ts"])) == 1)

    first, second, third = response_posts(oai)
    assert first["conversation"] == second["conversation"] != third["conversation"]
    assert len(oai.conversations) == 2


async def test_two_quick_messages_in_one_thread_are_answered_in_order(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    hold = asyncio.Event()
    # Scripts are taken in request order: the other thread's question is asked before the follow-up runs.
    oai.scripts.extend(
        [Script(text="first answer", hold=hold), Script(text="other answer"), Script(text="second answer")]
    )
    async with run_bot(slack, oai, sqlite_url):
        ts = (await ask_with_csv(slack))["ts"]
        await slack.wait_for(lambda: len(response_posts(oai)) == 1)
        conversation = response_posts(oai)[0]["conversation"]
        await slack.user_posts(channel="C1", text="follow-up 1", thread_ts=ts)
        await slack.wait_delivered()  # the follow-up is recorded and queued
        # Meanwhile a question in another thread, asked later, is answered in full: the bot is busy
        # with work, yet the follow-up still waits for the first answer of its own thread.
        other = await slack.user_posts(channel="C1", text="<@UBOT> another thread")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", other["ts"])) == 1)
        assert [p["conversation"] for p in response_posts(oai)].count(conversation) == 1, "the second turn waits"
        hold.set()
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)

    assert [t.split()[0] for t in answer_texts(slack, "C1", ts)] == ["first", "second"]
    same_thread = [p for p in response_posts(oai) if p["conversation"] == conversation]
    assert len(same_thread) == 2, "turns of one thread never overlap (no conversation_locked retries)"


async def test_different_threads_run_concurrently(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    hold = asyncio.Event()
    oai.scripts.extend([Script(text="slow", hold=hold)])
    async with run_bot(slack, oai, sqlite_url):
        a = await slack.user_posts(channel="C1", text="<@UBOT> question A")
        await slack.wait_for(lambda: any(m.streaming for m in bot_replies(slack, "C1", a["ts"])))
        b = await slack.user_posts(channel="C1", text="<@UBOT> question B")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", b["ts"])) == 1)
        shown_a = bot_replies(slack, "C1", a["ts"])
        assert [(m.text, m.streaming) for m in shown_a] == [("slow", True)], "A is still being written"
        hold.set()
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", a["ts"])) == 1)


async def test_redelivered_event_is_answered_once(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        message = await slack.user_posts(channel="C1", text="<@UBOT> how many rows?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", message["ts"])) == 1)
        first_envelope = next(e for e in slack.envelopes if e["payload"]["event"].get("ts") == message["ts"])
        await slack.deliver(first_envelope["payload"], retry_attempt=1, retry_reason="timeout")
        await slack.deliver(json.loads(json.dumps(first_envelope["payload"])), retry_attempt=2, retry_reason="timeout")
        await settled(slack, running)

    assert len(response_posts(oai)) == 1
    assert len(answer_texts(slack, "C1", message["ts"])) == 1


async def test_ignored_messages_get_no_answer(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        top = await slack.user_posts(channel="C1", text="just chatting, no mention")
        await slack.user_posts(channel="C1", text="a reply where the bot has no session", thread_ts=top["ts"])
        base = {"type": "message", "channel": "C1", "channel_type": "channel", "team": "T1"}
        noise = [
            {**base, "subtype": "bot_message", "bot_id": "B9", "username": "other", "text": "<@UBOT> hi", "ts": "9.1"},
            {**base, "user": "U9", "bot_id": "B9", "app_id": "A9", "text": "<@UBOT> from another app", "ts": "9.2"},
            {**base, "user": "UBOT", "bot_id": "B1", "text": "<@UBOT> my own echo", "ts": "9.3"},
            {
                **base,
                "subtype": "message_changed",
                "hidden": True,
                "message": {"user": "U1", "text": "<@UBOT> edited", "ts": top["ts"]},
                "ts": "9.4",
            },
            {**base, "subtype": "message_deleted", "hidden": True, "deleted_ts": top["ts"], "ts": "9.5"},
            {**base, "subtype": "channel_join", "user": "U2", "text": "<@U2> has joined", "ts": "9.6"},
        ]
        for i, event in enumerate(noise):
            await slack.deliver(
                {
                    "token": "x",
                    "team_id": "T1",
                    "api_app_id": "A1",
                    "type": "event_callback",
                    "event_id": f"EvNoise{i}",
                    "event_time": 1700000000,
                    "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
                    "event": event,
                }
            )
        await settled(slack, running)

    assert not response_posts(oai)
    assert not [c for c in slack.calls if c.method in {"chat.postMessage", "chat.startStream"}]


async def test_history_that_points_at_a_dead_container_moves_to_a_fresh_conversation(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.stale_history_fails = True
    oai.scripts.append(Script(text="평균 평점은 3.3점입니다.", code="df['rating'].mean()"))
    async with run_bot(slack, oai, sqlite_url):
        ts = (await ask_with_csv(slack))["ts"]
        await slack.wait_for(lambda: len(slack.calls_to("chat.stopStream")) == 1)
        first_container = next(iter(oai.containers))
        oai.expire_container(first_container)
        await slack.user_posts(channel="C1", text="최저 평점 리뷰는?", thread_ts=ts)
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)

    posts = oai.requests_to("POST", "/v1/responses")
    answered = [p.json for p in posts if p.json["conversation"] != posts[0].json["conversation"]]
    assert answered, "the follow-up went to a new conversation"
    new_conversation = oai.conversations[answered[-1]["conversation"]]
    seeded = json.dumps(new_conversation["items"][0], ensure_ascii=False)
    assert "평균 평점은 3.3점입니다" in seeded and "주요 키워드" in seeded, "the memory is carried over"
    texts = answer_texts(slack, "C1", ts)
    assert texts[1].startswith("Echo:"), "the user sees an answer, not an error"
    assert len(oai.requests_to("POST", "/v1/containers")) == 2, "one replacement container, not one per retry"


async def test_socket_reconnects_when_slack_recycles_the_connection(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url):
        before = slack.socket_connections
        await slack.disconnect_socket(reason="refresh_requested")
        await slack.wait_for(lambda: slack.socket_connections > before, timeout=20)
        message = await slack.user_posts(channel="C1", text="<@UBOT> still there?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", message["ts"])) == 1)
    assert len(slack.calls_to("apps.connections.open")) == 2
