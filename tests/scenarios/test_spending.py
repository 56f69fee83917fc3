"""What it may spend: usage stored per turn, budgets checked before any OpenAI call, the 80 % warning,
and no container for a thread that holds no file — over the wire, against the loopback fakes."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.governance.budgets import day_period, month_period
from tests.conftest import RunningBot, answer_texts, bot_replies, postgres_database, run_bot
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack

CSV = b"region,sales\nnorth,10\nsouth,7\n"
# $0.10 per output token, nothing for input or containers: a turn's cost is its output tokens / 10.
TENTH_PER_OUTPUT_TOKEN = {
    "OPENAI_PRICE_INPUT_PER_MTOK": "0",
    "OPENAI_PRICE_CACHED_INPUT_PER_MTOK": "0",
    "OPENAI_PRICE_OUTPUT_PER_MTOK": "100000",
    "OPENAI_PRICE_CONTAINER": "0",
}


async def settled(slack: FakeSlack, running: RunningBot) -> None:
    """Every delivery so far was acknowledged and every turn it started is over."""
    await slack.wait_delivered()
    assert await running.bot.scheduler.wait_idle(10)


def openai_calls(oai: FakeOpenAI) -> list[str]:
    return [f"{r.method} {r.path}" for r in oai.requests if r.path.startswith("/v1/")]


def turn_rows(sqlite_url: str) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM turns ORDER BY id").fetchall()
    return [dict(r) for r in rows]


def bot_texts(slack: FakeSlack, channel: str, ts: str) -> list[str]:
    return [m.text for m in bot_replies(slack, channel, ts) if m.text and not m.streaming]


def reset_text(scope: str) -> str:
    now = datetime.now(UTC)
    _, resets = month_period(now) if scope == "team_monthly" else day_period(now)
    return resets.strftime("%Y-%m-%d %H:%M UTC")


@pytest.mark.parametrize(
    ("variable", "scope", "second_user", "phrase"),
    [
        pytest.param("BUDGET_USER_DAILY_USD", "user_daily", "U1", "your daily limit ($0.01)", id="user-daily"),
        pytest.param(
            "BUDGET_CHANNEL_DAILY_USD", "channel_daily", "U2", "This channel's daily limit ($0.01)", id="channel-daily"
        ),
        pytest.param(
            "BUDGET_TEAM_MONTHLY_USD", "team_monthly", "U2", "This workspace's monthly limit ($0.01)", id="team-monthly"
        ),
    ],
)
async def test_an_exhausted_budget_refuses_the_next_turn_without_calling_openai(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, variable: str, scope: str, second_user: str, phrase: str
) -> None:
    # The first turn overshoots the $0.01 budget many times over (a CSV, so a container too) and is still
    # answered in full: a turn in flight is never cut off by its own spending.
    oai.scripts.append(
        Script(text="North sold the most. " * 10, usage={"input_tokens": 20_000, "output_tokens": 9_000})
    )
    async with run_bot(slack, oai, sqlite_url, env={variable: "0.01"}) as running:
        csv_file = slack.add_file(name="sales.csv", content=CSV)
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> who sold the most?", files=[csv_file]))["ts"]
        await settled(slack, running)
        assert answer_texts(slack, "C1", ts)[0].startswith("North sold the most. " * 10)
        calls_before = openai_calls(oai)

        # The next question (with a new file, which would be an upload) gets the refusal and nothing else.
        another = slack.add_file(name="more.csv", content=CSV)
        await slack.user_posts(channel="C1", text="and by month?", thread_ts=ts, user=second_user, files=[another])
        await settled(slack, running)

    assert openai_calls(oai) == calls_before, "no OpenAI call at all for a refused turn (no upload either)"
    refusal = bot_texts(slack, "C1", ts)[-1]
    assert phrase in refusal
    assert f"It resets at {reset_text(scope)}." in refusal
    first, second = turn_rows(sqlite_url)
    assert first["status"] == "done" and first["cost_usd"] > 0.01
    assert (second["status"], second["outcome"], second["cost_usd"]) == ("failed", "BudgetExhausted", 0.0)


async def test_a_refusal_is_in_the_language_of_the_question_on_postgresql(slack: FakeSlack, oai: FakeOpenAI) -> None:
    oai.scripts.append(Script(text="답", usage={"output_tokens": 10}))
    async with postgres_database() as url:
        env = {**TENTH_PER_OUTPUT_TOKEN, "BUDGET_USER_DAILY_USD": "1"}
        async with run_bot(slack, oai, url, env=env) as running:
            ts = (await slack.user_posts(channel="C1", text="<@UBOT> 안녕"))["ts"]
            await settled(slack, running)
            calls_before = openai_calls(oai)
            await slack.user_posts(channel="C1", text="하나 더", thread_ts=ts)
            await settled(slack, running)
    assert openai_calls(oai) == calls_before
    refusal = bot_texts(slack, "C1", ts)[-1]
    assert "오늘 사용 한도($1.00)" in refusal and reset_text("user_daily") in refusal


async def test_the_first_turn_past_80_percent_warns_once_under_its_answer(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    # Budget $10; turns cost $5 (50 %), $3.50 (85 %: the crossing), $0.50 (90 %: already past).
    oai.scripts.extend(
        Script(text=f"answer {n}", usage={"output_tokens": tokens}) for n, tokens in enumerate((50, 35, 5), 1)
    )
    env = {**TENTH_PER_OUTPUT_TOKEN, "BUDGET_USER_DAILY_USD": "10"}
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> first"))["ts"]
        await settled(slack, running)
        for text in ("second", "third"):
            await slack.user_posts(channel="C1", text=text, thread_ts=ts)
            await settled(slack, running)

    texts = bot_texts(slack, "C1", ts)
    warning = f"_(You have used 85% of your daily limit of $10.00; it resets at {reset_text('user_daily')}.)_"
    assert texts == ["answer 1", "answer 2", warning, "answer 3"], "one warning, right under the crossing answer"
    assert [r["cost_usd"] for r in turn_rows(sqlite_url)] == pytest.approx([5.0, 3.5, 0.5])


async def test_a_question_without_files_runs_without_a_container_until_the_first_file(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> what can you do?"))["ts"]
        await settled(slack, running)
        first_calls = openai_calls(oai)
        csv_file = slack.add_file(name="sales.csv", content=CSV)
        await slack.user_posts(channel="C1", text="here is the data", thread_ts=ts, files=[csv_file])
        await settled(slack, running)

    assert not [c for c in first_calls if "/v1/containers" in c], "no container for a thread without files"
    first, second = (r.json for r in oai.requests_to("POST", "/v1/responses"))
    for key in ("include", "max_tool_calls"):
        assert key not in first, f"{key} is only for the code interpreter"
    assert [t["type"] for t in first["tools"]] == ["function"], "no code interpreter: only the native chart function"
    assert len(oai.requests_to("POST", "/v1/containers")) == 1, "the first file creates the container"
    container_id = next(iter(oai.containers))
    assert second["tools"][0] == {"type": "code_interpreter", "container": container_id}
    assert second["include"] == ["code_interpreter_call.outputs"]
    assert second["conversation"] == first["conversation"], "same conversation, same memory"
    assert "Note: the Python environment was restarted" not in second["input"][0]["content"][0]["text"]
    assert [r["containers_created"] for r in turn_rows(sqlite_url)] == [0, 1]
    assert len(answer_texts(slack, "C1", ts)) == 2


async def test_each_turn_stores_its_usage_and_estimated_cost(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    usage = {
        "input_tokens": 1_000,
        "input_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 0},
        "output_tokens": 200,
        "output_tokens_details": {"reasoning_tokens": 50},
    }
    oai.scripts.extend([Script(text="one", reasoning=True, usage=usage), Script(text="two", usage=usage)])
    caplog.set_level(logging.WARNING, logger="bot.governance.pricing")
    async with run_bot(slack, oai, sqlite_url) as running:
        csv_file = slack.add_file(name="sales.csv", content=CSV)
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> total?", files=[csv_file]))["ts"]
        await settled(slack, running)
        await slack.user_posts(channel="C1", text="and again", thread_ts=ts)
        await settled(slack, running)

    first, second = turn_rows(sqlite_url)
    stored = {
        k: first[k]
        for k in (
            "model",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "containers_created",
            "bytes_uploaded",
        )
    }
    assert stored == {
        "model": "gpt-test",
        "input_tokens": 1_000,
        "cached_input_tokens": 400,
        "output_tokens": 200,
        "reasoning_tokens": 50,
        "containers_created": 1,
        "bytes_uploaded": len(CSV),
    }
    # gpt-test is unknown: gpt-5.1's rates ($1.25 / $0.125 / $10 per million) plus a 4 GB session ($0.12).
    tokens_usd = (600 * 1.25 + 400 * 0.125 + 200 * 10.0) / 1_000_000
    assert first["cost_usd"] == pytest.approx(tokens_usd + 0.12)
    assert (second["containers_created"], second["bytes_uploaded"]) == (0, 0), "the live container was reused"
    assert second["cost_usd"] == pytest.approx(tokens_usd)
    unknown = [r for r in caplog.records if "no built-in prices for model gpt-test" in r.getMessage()]
    assert len(unknown) == 1, "an unknown model is logged once"


async def test_a_container_replaced_mid_thread_is_counted(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        csv_file = slack.add_file(name="sales.csv", content=CSV)
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> total?", files=[csv_file]))["ts"]
        await settled(slack, running)
        oai.expire_container(next(iter(oai.containers)))
        await slack.user_posts(channel="C1", text="and again", thread_ts=ts)
        await settled(slack, running)

    assert len(oai.requests_to("POST", "/v1/containers")) == 2
    assert [r["containers_created"] for r in turn_rows(sqlite_url)] == [1, 1]
    assert len(answer_texts(slack, "C1", ts)) == 2
