"""How much memory the bot process holds when idle, beside a plain Bolt bot measured in the same run.

Run: `python -m bench.idle_memory [--runs 3]`.

Each process is started against the loopback `FakeSlack` / `FakeOpenAI` of `tests.fakes` (in this process) in
Socket Mode, and its VmRSS is read from /proc once it has connected and one second has passed:

1. floor: a plain Bolt bot (`slack_bolt` `AsyncApp` + `AsyncSocketModeHandler`, an `app_mention` listener and an
   `openai.AsyncOpenAI` client, nothing else), the smallest thing that could answer a mention with a model;
2. the bot (`python -m bot`, SQLite, env from `tests.conftest.bot_env`), idle;
3. the same bot process after answering one mention (what a turn imports stays loaded).

Runs alternate floor and bot. MB means MiB. The goal is an idle bot at ≤ 80 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from tests.conftest import answer_texts, bot_env
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
GOAL_MIB = 80
START_S = 30.0
SETTLE_S = 1.0  # let start-up allocations settle before reading RSS (a benchmark, not a test)
ANSWER_S = 30.0

PLAIN_BOT = """
import asyncio, os
import openai
from slack_bolt.async_app import AsyncApp
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient

async def main():
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = AsyncApp(client=client)
    llm = openai.AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=os.environ["OPENAI_BASE_URL"])

    @app.event("app_mention")
    async def mention(event, say):
        await say(text="ok", thread_ts=event["ts"])

    handler = AsyncSocketModeHandler(app, os.environ["SLACK_APP_TOKEN"])
    await handler.start_async()

asyncio.run(main())
"""


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@asynccontextmanager
async def process(argv: Sequence[str], env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_LEVEL": "WARNING", **env}
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=full_env, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL
        )
    try:
        yield proc
    except BaseException:
        tail = log.read_text(errors="replace")[-3000:]  # noqa: ASYNC240 - the bench is failing anyway
        print(f"--- log tail ({log}) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def idle_rss(slack: FakeSlack, proc: asyncio.subprocess.Process, connections_before: int) -> float:
    await slack.wait_for(lambda: slack.socket_connections > connections_before, timeout=START_S)
    await asyncio.sleep(SETTLE_S)
    return vm_rss_mib(proc.pid)


async def measure_floor(work: Path, n: int) -> float:
    async with FakeSlack() as slack, FakeOpenAI() as oai:
        env = bot_env(slack, oai, "sqlite://")
        env.pop("DATABASE_URL")
        async with process([sys.executable, "-c", PLAIN_BOT], env, work / f"plain-{n}.log") as proc:
            return await idle_rss(slack, proc, 0)


async def measure_bot(work: Path, n: int) -> tuple[float, float]:
    async with FakeSlack() as slack, FakeOpenAI() as oai:
        env = bot_env(slack, oai, f"sqlite:///{work / f'bot-{n}.sqlite3'}")
        argv = [sys.executable, "-m", "bot", "--env-file", str(work / "no.env")]
        # A bot restarting on its database, as it idles in production (a first start also migrates).
        async with process(
            [sys.executable, "-m", "bot", "migrate", "--env-file", str(work / "no.env")], env, work / f"migrate-{n}.log"
        ) as migrate:
            if await migrate.wait() != 0:
                raise RuntimeError(f"python -m bot migrate failed: {(work / f'migrate-{n}.log').read_text()[-2000:]}")
        async with process(argv, env, work / f"bot-{n}.log") as proc:
            idle = await idle_rss(slack, proc, 0)
            oai.scripts.append(Script(text="평균은 42입니다."))
            posted = await slack.user_posts(channel="C1", text=f"<@{slack.bot_user_id}> 평균은?")
            await slack.wait_for(lambda: bool(answer_texts(slack, "C1", posted["ts"])), timeout=ANSWER_S)
            await asyncio.sleep(SETTLE_S)
            return idle, vm_rss_mib(proc.pid)


async def main_async(runs: int) -> int:
    floors: list[float] = []
    idles: list[float] = []
    afters: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        work = Path(tmp)
        for n in range(runs):
            floors.append(await measure_floor(work, n))
            idle, after = await measure_bot(work, n)
            idles.append(idle)
            afters.append(after)
            print(f"run {n + 1}: floor {floors[-1]:.1f} MiB, bot idle {idle:.1f} MiB, after one answer {after:.1f}")
    floor, idle, after = (statistics.median(v) for v in (floors, idles, afters))
    print()
    print(f"| process (median of {runs} runs) | RSS | × floor |")
    print("|---|---|---|")
    print(f"| floor: plain Bolt bot (AsyncApp, Socket Mode, openai client), idle | {floor:.1f} MiB | 1.00 |")
    print(f"| bot, idle | {idle:.1f} MiB | {idle / floor:.2f} |")
    print(f"| bot, after answering one mention | {after:.1f} MiB | {after / floor:.2f} |")
    print(f"\nidle goal ≤ {GOAL_MIB} MiB: {'met' if idle <= GOAL_MIB else 'NOT met'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="alternating floor/bot runs (default 3)")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args.runs))


if __name__ == "__main__":
    raise SystemExit(main())
