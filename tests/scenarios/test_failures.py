"""Every failure a user can meet ends in a short message in the thread, in their language."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import answer_texts, bot_replies, run_bot, user_uploads
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack


def visible_bot_text(slack: FakeSlack, channel: str, ts: str) -> str:
    return "\n".join(m.text for m in bot_replies(slack, channel, ts))


async def ask(slack: FakeSlack, text: str = "<@UBOT> 매출 추이를 분석해줘") -> str:
    return str((await slack.user_posts(channel="C1", text=text))["ts"])


async def wait_bot_message(slack: FakeSlack, ts: str, count: int = 1) -> None:
    await slack.wait_for(lambda: len(bot_replies(slack, "C1", ts)) >= count and slack.status("C1", ts) == "")


async def test_quota_exhausted_is_explained_at_once_in_korean(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    oai.fail_next(
        "/v1/responses",
        status=429,
        code="insufficient_quota",
        type="insufficient_quota",
        message="You exceeded your current quota, please check your plan and billing details.",
    )
    caplog.set_level(logging.WARNING, logger="bot")
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await wait_bot_message(slack, ts)
    text = visible_bot_text(slack, "C1", ts)
    assert "한도" in text and "관리자" in text
    assert "Traceback" not in text and "insufficient_quota" not in text
    assert len(oai.requests_to("POST", "/v1/responses")) == 1, "quota errors are not retried"
    assert "req_" in caplog.text, "the log carries the OpenAI request id"


async def test_english_question_gets_an_english_error(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    oai.fail_next("/v1/responses", status=401, code="invalid_api_key", message="Incorrect API key provided")
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> what is the trend?")
        await wait_bot_message(slack, ts)
    assert "OPENAI_API_KEY" in visible_bot_text(slack, "C1", ts)
    assert "rejected the bot's API key" in visible_bot_text(slack, "C1", ts)


async def test_transient_rate_limit_is_retried_before_anything_is_shown(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.fail_next(
        "/v1/responses",
        status=429,
        code="rate_limit_exceeded",
        message="Rate limit reached for requests",
        headers={"retry-after-ms": "50"},
    )
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> rows?")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert len(oai.requests_to("POST", "/v1/responses")) == 2
    assert answer_texts(slack, "C1", ts)[0].startswith("Echo:")


async def test_failed_response_keeps_the_text_and_gives_the_request_id(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    oai.scripts.append(Script(text="부분 답변입니다", status="failed"))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack)
        await wait_bot_message(slack, ts, count=2)
    text = visible_bot_text(slack, "C1", ts)
    assert "부분 답변입니다" in text
    assert "실패" in text and "req_" in text


async def test_bad_file_is_reported_and_the_question_still_answered(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    gone = slack.add_file(name="old.csv", content=b"a,b\n1,2\n", mode="tombstone")
    good = slack.add_file(name="good.csv", content=b"a,b\n1,2\n")
    async with run_bot(slack, oai, sqlite_url):
        ts = str((await slack.user_posts(channel="C1", text="<@UBOT> 비교해줘", files=[gone, good]))["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 2)
    texts = answer_texts(slack, "C1", ts)
    assert "`old.csv`" in texts[0] and "다시 올려" in texts[0]
    assert len(user_uploads(oai)) == 1
    body = oai.requests_to("POST", "/v1/responses")[0].json
    assert "good.csv" in body["input"][0]["content"][0]["text"]
    assert "old.csv" not in body["input"][0]["content"][0]["text"]


async def test_sign_in_page_instead_of_file_names_the_fix(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    csv_file = slack.add_file(name="reviews.csv", content=b"a,b\n1,2\n")
    # What Slack serves when the token lacks files:read: HTTP 200 with an HTML sign-in page.
    csv_file["url_private_download"] = csv_file["permalink"]
    async with run_bot(slack, oai, sqlite_url):
        ts = str((await slack.user_posts(channel="C1", text="<@UBOT> analyze", files=[csv_file]))["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
    assert "files:read" in answer_texts(slack, "C1", ts)[0]
    assert not user_uploads(oai), "an HTML page is never uploaded as the CSV"


async def test_streaming_unavailable_falls_back_to_posting_in_the_thread(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    slack.fail_next("chat.startStream", error="not_allowed_token_type")
    oai.scripts.append(Script(text="fallback answer " * 30))
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> go")
        await wait_bot_message(slack, ts)
    texts = answer_texts(slack, "C1", ts)
    assert texts == [("fallback answer " * 30).rstrip()] or texts == ["fallback answer " * 30]
    assert slack.calls_to("chat.postMessage")[0].params["thread_ts"] == ts


async def test_slack_rate_limit_is_waited_out(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    slack.fail_next("chat.startStream", status=429, retry_after=1)
    async with run_bot(slack, oai, sqlite_url):
        ts = await ask(slack, "<@UBOT> go")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1, timeout=15)
    assert len(slack.calls_to("chat.startStream")) == 2
    assert not slack.calls_to("chat.postMessage")
