"""Three real `python -m bot` processes on one PostgreSQL database keep a single process's promises.

Slack spreads the events over the app's open Socket Mode connections at random, so consecutive messages
of one thread land on different processes. Every message is answered once, each thread's answers come in
the order of its messages, and a process killed mid-run (`kill -9`) has its turns finished by the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from pathlib import Path

import asyncpg

from bot.domain import ThreadKey
from tests.conftest import answer_texts, bot_process, postgres_database, run_bot
from tests.fakes.openai_fake import FakeOpenAI, Script, _last_user_text
from tests.fakes.slack import FakeSlack

THREADS = 25
MESSAGES_PER_THREAD = 6  # 150 messages
TOKEN = re.compile(r"q(\d\d)n(\d\d)")


def question(thread: int, message: int) -> str:
    return f"q{thread:02d}n{message:02d}"


def acknowledged(slack: FakeSlack, ts: str) -> bool:
    """True once any process acknowledged an event of the message (it is then in the database)."""
    return any(env["payload"]["event"].get("ts") == ts and env["envelope_id"] in slack.acks for env in slack.envelopes)


async def post_thread(slack: FakeSlack, thread: int, roots: dict[int, str]) -> None:
    """A person asking in one thread: a mention, then replies without one, each once the last was taken."""
    root = await slack.user_posts(channel="C1", text=f"<@UBOT> {question(thread, 0)}")
    roots[thread] = root["ts"]
    await slack.wait_for(lambda: acknowledged(slack, root["ts"]), timeout=15)
    for message in range(1, MESSAGES_PER_THREAD):
        reply = await slack.user_posts(channel="C1", text=question(thread, message), thread_ts=root["ts"])
        await slack.wait_for(lambda ts=reply["ts"]: acknowledged(slack, ts), timeout=15)


def asked_in(body: dict[str, object]) -> str:
    found = TOKEN.search(_last_user_text(body))
    return found.group(0) if found else "?"


def asked(oai: FakeOpenAI) -> Counter[str]:
    """How many times OpenAI was asked each question."""
    counts: Counter[str] = Counter()
    for request in oai.requests_to("POST", "/v1/responses"):
        found = TOKEN.search(_last_user_text(request.json or {}))
        if found:
            counts[found.group(0)] += 1
    return counts


def answered(slack: FakeSlack, roots: dict[int, str]) -> dict[int, list[str]]:
    """Per thread, the questions the finished answers echo, in the order the answers appear."""
    return {
        thread: [m.group(0) for text in answer_texts(slack, "C1", ts) if (m := TOKEN.search(text))]
        for thread, ts in roots.items()
    }


def expected_questions() -> dict[int, list[str]]:
    return {t: [question(t, m) for m in range(MESSAGES_PER_THREAD)] for t in range(THREADS)}


async def test_three_replicas_answer_every_message_once_in_thread_order_through_a_kill(
    slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path
) -> None:
    # Answers take a moment (several stream events), so the kill lands on running turns.
    oai.default_script = lambda body: Script(text=f"Echo: {asked_in(body)}", delay_s=0.01)
    roots: dict[int, str] = {}
    total = THREADS * MESSAGES_PER_THREAD
    async with postgres_database() as url, contextlib.AsyncExitStack() as stack:
        procs = [
            await stack.enter_async_context(bot_process(slack, oai, url, tmp_path / f"bot{i}.log")) for i in range(3)
        ]
        posting = asyncio.gather(*(post_thread(slack, t, roots) for t in range(THREADS)))
        await slack.wait_for(lambda: sum(asked(oai).values()) >= total // 3, timeout=60)
        procs[1].kill()  # kill -9 in the middle of the run
        await procs[1].wait()
        await asyncio.wait_for(posting, 90)
        try:
            await slack.wait_for(lambda: sum(len(q) for q in answered(slack, roots).values()) >= total, timeout=60)
        except AssertionError:
            missing = {t: sorted(set(qs) - set(answered(slack, roots)[t])) for t, qs in expected_questions().items()}
            conn = await asyncpg.connect(url)
            rows = await conn.fetch(
                "SELECT id, thread_ts, ts, status, owner, lease_until, attempts, extract(epoch from now()) AS now"
                " FROM turns WHERE status IN ('pending','running') ORDER BY thread_ts, ts"
            )
            await conn.close()
            raise AssertionError(
                f"unanswered: { {t: q for t, q in missing.items() if q} }\n"
                + "\n".join(map(str, rows[:8]))
                + f"\nactive streams {oai.active_streams} asked {sum(asked(oai).values())}\n"
                + "\n".join(
                    f"{t}: {[(m.text[:30], m.streaming) for m in slack.thread('C1', roots[t])]}"
                    for t, q in missing.items()
                    if q
                )[:6000]
            ) from None

    expected = expected_questions()
    assert answered(slack, roots) == expected, "every message answered once, in its thread's order"
    counts = asked(oai)
    assert set(counts) == {q for qs in expected.values() for q in qs}
    twice = {q for q, n in counts.items() if n > 1}
    assert all(n <= 2 for n in counts.values())
    # Only turns the killed process had started are asked again (their partial answers became a note).
    assert len(twice) <= 16, twice


async def test_a_stop_that_reaches_another_replica_stops_the_turn_where_it_runs(
    slack: FakeSlack, oai: FakeOpenAI, postgres_url: str
) -> None:
    hold = asyncio.Event()
    oai.scripts.append(Script(text="a long analysis", hold=hold))
    async with run_bot(slack, oai, postgres_url) as first, run_bot(slack, oai, postgres_url) as second:
        ts = (await slack.user_posts(channel="C1", text="<@UBOT> analyse everything"))["ts"]
        await oai.wait_for(lambda: oai.active_streams == 1)
        bots = [first.bot, second.bot]
        running = next(b for b in bots if b.scheduler.held_turn_ids())
        other = next(b for b in bots if b is not running)
        thread = ThreadKey("T1", "C1", ts)
        # The stop word reached the replica that does not run the turn: it passes the stop on.
        assert other.scheduler.stop(thread) is False
        assert other.replicas is not None and await other.replicas.stop_elsewhere(thread)
        await slack.wait_for(lambda: any("Stopped the analysis" in text for text in answer_texts(slack, "C1", ts)))
        assert await running.scheduler.wait_idle(timeout=10)
        hold.set()
        assert await other.replicas.stop_elsewhere(thread) is False, "nothing is left to stop"

    stopped = [text for text in answer_texts(slack, "C1", ts) if "Stopped the analysis" in text]
    assert len(stopped) == 1
