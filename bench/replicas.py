"""Throughput, duplicates and order violations with 1, 2 and 3 replicas on one PostgreSQL database.

Run: `python -m bench.replicas [--messages 150] [--threads 25] [--replicas 1,2,3]`.

Each replica is a real `python -m bot` process in Socket Mode against the loopback fakes (this process),
on a fresh PostgreSQL database (`TEST_POSTGRES_URL`, default the local server). The fake Slack delivers
each event to one of the open connections at random. M people ask in M threads at once: a mention, then
replies without one, each sent once Slack has the previous one acknowledged (a person waits for Slack to
show their message). The fake OpenAI echoes the question. Printed per replica count: messages answered
per second (first post to last answer), how many were answered more than once (duplicates), and how
many answers came out of their thread's order.

Floor: the same run on one process with SQLite, the single-process default that coordinates nothing
across processes: what the replicas' cross-process locking and hand-over costs shows as the gap to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.conftest import answer_texts, bot_process, postgres_database
from tests.fakes.openai_fake import FakeOpenAI, Script, _last_user_text
from tests.fakes.slack import FakeSlack

TOKEN = re.compile(r"q(\d\d\d)n(\d\d\d)")


def question(thread: int, message: int) -> str:
    return f"q{thread:03d}n{message:03d}"


def echo(body: dict[str, object]) -> Script:
    found = TOKEN.search(_last_user_text(body))
    return Script(text=f"Echo: {found.group(0) if found else '?'}")


def acknowledged(slack: FakeSlack, ts: str) -> bool:
    return any(env["payload"]["event"].get("ts") == ts and env["envelope_id"] in slack.acks for env in slack.envelopes)


async def ask(slack: FakeSlack, thread: int, count: int, roots: dict[int, str]) -> None:
    root = await slack.user_posts(channel="C1", text=f"<@UBOT> {question(thread, 0)}")
    roots[thread] = root["ts"]
    await slack.wait_for(lambda: acknowledged(slack, root["ts"]), timeout=60)
    for message in range(1, count):
        reply = await slack.user_posts(channel="C1", text=question(thread, message), thread_ts=root["ts"])
        await slack.wait_for(lambda ts=reply["ts"]: acknowledged(slack, ts), timeout=60)


async def run(replicas: int, *, messages: int, threads: int, sqlite: bool = False) -> tuple[float, int, int]:
    """(messages answered per second, duplicates, order violations) for one run."""
    per_thread = max(1, messages // threads)
    total = per_thread * threads
    roots: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            slack = await stack.enter_async_context(FakeSlack())
            oai = await stack.enter_async_context(FakeOpenAI())
            oai.default_script = echo
            if sqlite:
                url = f"sqlite:///{Path(tmp) / 'bot.sqlite3'}"
            else:
                url = await stack.enter_async_context(postgres_database())
            for i in range(replicas):
                await stack.enter_async_context(
                    bot_process(slack, oai, url, Path(tmp) / f"bot{i}.log", env={"LOG_LEVEL": "WARNING"})
                )
            started = time.monotonic()
            await asyncio.gather(*(ask(slack, t, per_thread, roots) for t in range(threads)))

            def answers() -> dict[int, list[str]]:
                return {
                    t: [m.group(0) for text in answer_texts(slack, "C1", ts) if (m := TOKEN.search(text))]
                    for t, ts in roots.items()
                }

            await slack.wait_for(lambda: sum(len(a) for a in answers().values()) >= total, timeout=300)
            elapsed = time.monotonic() - started
            got = answers()
    counts = Counter(q for qs in got.values() for q in qs)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    violations = 0
    for qs in got.values():
        numbers = [int(q[-3:]) for q in qs]
        violations += sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    return total / elapsed, duplicates, violations


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=150)
    parser.add_argument("--threads", type=int, default=25)
    parser.add_argument("--replicas", default="1,2,3")
    args = parser.parse_args()
    random.seed(0)
    print(f"{args.messages} messages over {args.threads} threads")
    print("| setup | messages answered / s | duplicates | order violations |")
    print("|---|---|---|---|")
    rate, dup, bad = await run(1, messages=args.messages, threads=args.threads, sqlite=True)
    print(f"| floor: 1 process, SQLite | {rate:.1f} | {dup} | {bad} |", flush=True)
    for n in (int(x) for x in args.replicas.split(",")):
        rate, dup, bad = await run(n, messages=args.messages, threads=args.threads)
        print(f"| {n} replica(s), PostgreSQL | {rate:.1f} | {dup} | {bad} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
