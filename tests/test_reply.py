"""What `ThreadReply` sends to Slack for an answer: the real Web API client against the loopback fake Slack.

The Slack-call budget of an answer: the first text at once; after it at most one text write per
`STREAM_FLUSH_CHARS` streamed characters, the rest riding on calls made anyway (a step's chunk, the
closing `chat.stopStream`); a status call only when the status Slack shows changes.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import ThreadKey
from bot.slack import reply as reply_module
from bot.slack.reply import STREAM_FLUSH_CHARS, UPDATE_FLUSH_CHARS, ThreadReply, feedback_blocks
from tests.fakes.slack import FakeSlack, RecordedCall

BUTTONS = feedback_blocks(response_id="resp_1", good_label="Helpful", bad_label="Not helpful")
ANSWER_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage", "chat.update")


@pytest.fixture
async def thread(slack: FakeSlack) -> ThreadKey:
    root = await slack.user_posts(channel="C1", text="<@UBOT> 분석해줘", deliver=False)
    return ThreadKey(team_id="T1", channel="C1", thread_ts=str(root["ts"]))


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    web = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    yield web
    if web.session is not None:
        await web.session.close()


def make_reply(client: AsyncWebClient, thread: ThreadKey) -> ThreadReply:
    return ThreadReply(client=client, thread=thread, recipient_user_id="U1")


def answer_calls(slack: FakeSlack) -> list[RecordedCall]:
    return [c for c in slack.calls if c.method in ANSWER_METHODS]


def markdown_of(call: RecordedCall) -> str:
    """The answer text one call carried (`markdown_text` and markdown chunks)."""
    chunks = call.params.get("chunks") or []
    return str(call.params.get("markdown_text") or "") + "".join(
        c["text"] for c in chunks if c.get("type") == "markdown_text"
    )


def shown(slack: FakeSlack, thread: ThreadKey) -> str:
    return "".join(m.text for m in slack.thread(thread.channel, thread.thread_ts) if m.bot)


def pieces(text: str, size: int = 20) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


LONG_ANSWER = "".join(f"{i:04d} 매출은 지역별로 다르게 늘었습니다. Revenue grew.\n" for i in range(80))[:3_200]


async def test_a_long_answer_makes_one_text_write_per_600_characters_after_the_first(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    reply = make_reply(client, thread)
    deltas = pieces(LONG_ANSWER)
    await reply.write(deltas[0])
    start = slack.calls_to("chat.startStream")
    assert len(start) == 1 and markdown_of(start[0]) == deltas[0], "the first text is sent at once"
    assert shown(slack, thread) == deltas[0], "and is visible"
    for delta in deltas[1:]:
        await reply.write(delta)
    await reply.finish(blocks=BUTTONS)

    assert shown(slack, thread) == LONG_ANSWER, "every character once, in order"
    appends = slack.calls_to("chat.appendStream")
    after_first = len(LONG_ANSWER) - len(deltas[0])
    assert len(appends) <= math.floor(after_first / STREAM_FLUSH_CHARS)
    assert all(len(markdown_of(c)) >= STREAM_FLUSH_CHARS for c in appends), "no small write"
    (stop,) = slack.calls_to("chat.stopStream")
    assert markdown_of(stop), "the last text rides on the closing call"
    assert stop.params["blocks"] == BUTTONS, "beside the feedback buttons"
    assert [c.method for c in answer_calls(slack)] == [
        "chat.startStream",
        *["chat.appendStream"] * len(appends),
        "chat.stopStream",
    ]
    assert len(answer_calls(slack)) <= 7, "3,200 characters: start, five appends at most, stop"
    (message,) = [m for m in slack.thread(thread.channel, thread.thread_ts) if m.bot]
    assert not message.streaming and message.blocks == BUTTONS


async def test_text_held_when_code_starts_goes_out_with_the_step_above_it(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    """A model that writes 300 characters, then runs code for a long time: the held text is visible from
    the step's call on, before the code runs, without a call of its own."""
    reply = make_reply(client, thread)
    text = "가" * 300
    for delta in pieces(text):
        await reply.write(delta)
    assert shown(slack, thread) == text[:20], "only the first text so far: the rest waits for a call"
    assert await reply.step("ci_1", "Reading sales.csv", status="in_progress")
    assert shown(slack, thread) == text, "the held text is visible while the code runs"
    (append,) = slack.calls_to("chat.appendStream")
    chunks = append.params["chunks"]
    assert [c["type"] for c in chunks] == ["markdown_text", "task_update"], "the text above the step"
    assert chunks[0]["text"] == text[20:]
    assert await reply.step("ci_1", "Reading sales.csv", status="complete")
    await reply.write("끝.")
    await reply.finish(blocks=BUTTONS)
    assert shown(slack, thread) == text + "끝."
    assert [c.method for c in answer_calls(slack)] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    (message,) = [m for m in slack.thread(thread.channel, thread.thread_ts) if m.bot]
    assert [(t["title"], t["status"]) for t in message.tasks] == [("Reading sales.csv", "complete")]


async def test_the_first_text_after_a_step_opened_the_stream_is_sent_at_once(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    reply = make_reply(client, thread)
    assert await reply.step("ci_1", "Running Python", status="in_progress")
    assert await reply.step("ci_1", "Running Python", status="complete")
    await reply.write("평균은 ")
    assert shown(slack, thread) == "평균은 ", "first text at once, although the stream was open already"
    await reply.write("3점입니다.")
    assert shown(slack, thread) == "평균은 ", "later text is held"
    await reply.finish(blocks=BUTTONS)
    assert shown(slack, thread) == "평균은 3점입니다."
    assert markdown_of(slack.calls_to("chat.stopStream")[0]) == "3점입니다."


async def test_held_text_survives_a_refused_step(slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey) -> None:
    reply = make_reply(client, thread)
    await reply.write("Looking at the file. ")
    await reply.write("Now the numbers.")
    slack.fail_next("chat.appendStream", error="invalid_chunks")
    assert not await reply.step("ci_1", "Running Python", status="in_progress"), "steps off for the turn"
    assert shown(slack, thread) == "Looking at the file. "
    await reply.flush()
    assert shown(slack, thread) == "Looking at the file. Now the numbers.", "nothing lost"
    assert not await reply.step("ci_2", "Running Python", status="in_progress"), "not tried again"
    assert len([c for c in slack.calls_to("chat.appendStream") if c.params.get("chunks")]) == 1


async def test_a_status_is_sent_only_when_it_changes(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    reply = make_reply(client, thread)
    await reply.set_status("is analyzing…")
    await reply.set_status("is analyzing…")
    assert len(slack.calls_to("assistant.threads.setStatus")) == 1, "the same status once"
    await reply.write("Answer")
    assert slack.status(thread.channel, thread.thread_ts) == "", "Slack cleared it with the reply"
    await reply.finish(blocks=BUTTONS)
    await reply.set_status("")
    assert len(slack.calls_to("assistant.threads.setStatus")) == 1, "no call to clear what is cleared"
    assert slack.status(thread.channel, thread.thread_ts) == ""


async def test_a_status_shown_after_the_reply_is_cleared_by_a_call(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    reply = make_reply(client, thread)
    await reply.set_status("is analyzing…")
    await reply.write("Answer")
    await reply.set_status("is uploading files…")  # after the reply: Slack does not clear this one
    await reply.finish(blocks=BUTTONS)
    assert slack.status(thread.channel, thread.thread_ts) == "is uploading files…"
    await reply.set_status("")
    assert slack.status(thread.channel, thread.thread_ts) == ""
    assert [c.params["status"] for c in slack.calls_to("assistant.threads.setStatus")] == [
        "is analyzing…",
        "is uploading files…",
        "",
    ]


async def test_a_status_older_than_slacks_own_timeout_is_sent_again(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = make_reply(client, thread)
    await reply.set_status("is running Python…")
    monkeypatch.setattr(reply_module, "STATUS_FRESH_S", 0.0)  # as if Slack's 2 minutes had passed
    await reply.set_status("is running Python…")
    assert len(slack.calls_to("assistant.threads.setStatus")) == 2


async def test_a_failed_status_call_is_not_taken_as_shown(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    reply = make_reply(client, thread)
    slack.fail_next("assistant.threads.setStatus", error="ratelimited", status=429)
    await reply.set_status("is analyzing…")
    await reply.set_status("is analyzing…")
    assert slack.status(thread.channel, thread.thread_ts) == "is analyzing…"


async def test_the_posting_fallback_edits_once_per_1200_characters_and_ends_with_one_edit(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    slack.fail_next("chat.startStream", error="not_allowed_token_type")
    reply = make_reply(client, thread)
    deltas = pieces(LONG_ANSWER)
    for delta in deltas:
        await reply.write(delta)
    await reply.finish(blocks=BUTTONS)
    (post,) = slack.calls_to("chat.postMessage")
    assert post.params["markdown_text"] == deltas[0], "the first text at once"
    updates = slack.calls_to("chat.update")
    assert len(updates) <= math.floor((len(LONG_ANSWER) - len(deltas[0])) / UPDATE_FLUSH_CHARS) + 1
    assert updates[-1].params["blocks"][0] == {"type": "markdown", "text": LONG_ANSWER}, "text and buttons at once"
    assert updates[-1].params["blocks"][1:] == BUTTONS
    (message,) = [m for m in slack.thread(thread.channel, thread.thread_ts) if m.bot]
    assert message.blocks[0] == {"type": "markdown", "text": LONG_ANSWER}, "what the user sees: the whole answer"


async def test_a_stream_slack_closed_gets_its_last_text_and_buttons_by_one_edit(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    reply = make_reply(client, thread)
    await reply.write("평균은 ")
    await reply.write("3점")
    slack.stream_ttl_s = 0.0  # the stream has expired at Slack
    await reply.finish(blocks=BUTTONS)
    assert slack.calls_to("chat.stopStream")[0].params["markdown_text"] == "3점"
    (update,) = slack.calls_to("chat.update")
    assert update.params["blocks"] == [{"type": "markdown", "text": "평균은 3점"}, *BUTTONS]
    assert shown(slack, thread) == "평균은 3점"
    assert slack.calls_to("agents.sessions.setStatus")[-1].params["status"] == "active"


async def test_buttons_refused_at_the_stop_keep_the_last_text(
    slack: FakeSlack, client: AsyncWebClient, thread: ThreadKey
) -> None:
    reply = make_reply(client, thread)
    await reply.write("Total: ")
    await reply.write("42")
    slack.fail_next("chat.stopStream", error="invalid_blocks")
    await reply.finish(blocks=BUTTONS)
    first, second = slack.calls_to("chat.stopStream")
    assert "blocks" in first.params and "blocks" not in second.params
    assert markdown_of(second) == "42"
    assert shown(slack, thread) == "Total: 42"
    assert not any(m.streaming for m in slack.thread(thread.channel, thread.thread_ts))
