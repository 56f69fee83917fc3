"""How fast the bot acknowledges Slack when a burst of mentions arrives at once, and whether each is answered once.

Run: `python -m bench.ack_latency [--events 200] [--mode socket|http|both] [--database sqlite|postgresql]`.

Everything runs in this process on 127.0.0.1: the loopback FakeSlack and FakeOpenAI from `tests.fakes` and a
real bot wired as the scenario tests wire it (`bot.app.build_bot` + `serve`, settings from
`tests.conftest.bot_env`). N people each post
`<@UBOT> question i` as a new top-level message in C1 at the same moment; like real Slack, each post yields an
`app_mention` and a `message` event, so 2N deliveries are in flight together. Measured per delivery:

- Socket Mode: envelope sent -> `{"envelope_id"}` ack received (FakeSlack's `acks`);
- HTTP: signed POST sent -> response (FakeSlack's `_post_event`, tagged here with the event it carried).

Then it waits (bounded) until every message is answered and counts, per thread, the bot's answers in Slack and
the `POST /v1/responses` made for the thread's conversation in OpenAI. Ack budget: Slack allows 3 s; our goal
is p99 < 50 ms with 200 events in flight and every message answered exactly once.

The fakes share the bot's event loop, so their own work (serving Web API calls, streaming responses, echoing
the bot's posts back as events) competes with the bot for the loop, as it does in the scenario tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import re
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import Bot, build_bot, serve
from bot.config import Settings
from tests.conftest import answer_texts, bot_env, free_port, postgres_database, wait_http_ready
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

ACK_GOAL_P99_MS = 50.0
ACK_BUDGET_S = 3.0  # Slack's
ANSWER_TIMEOUT_S = 120.0
ACK_WAIT_S = 20.0  # 3 s budget x (1 try + 3 retries) plus slack
IDLE_WAIT_S = 15.0
BOT_STOP_S = 15.0
ANSWER_POLL_S = 0.25  # counting answers scans every thread; poll gently so the bench does not load the loop
LOOP_LAG_PROBE_S = 0.005
CHANNEL = "C1"
_QUESTION = re.compile(r"question (\d+)\b")

log = logging.getLogger("bench.ack_latency")


class _BenchSlack(FakeSlack):
    """FakeSlack that also remembers which event each HTTP delivery carried (`http_deliveries` does not say)."""

    def __init__(self) -> None:
        super().__init__()
        self.http_by_event: dict[str, list[tuple[int, float]]] = defaultdict(list)

    async def _post_event(self, url: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bool]:
        start = time.perf_counter()
        status, no_retry = await super()._post_event(url, raw, headers)
        self.http_by_event[json.loads(raw)["event_id"]].append((status, time.perf_counter() - start))
        return status, no_retry


@dataclass
class _Probe:
    """Timings taken inside the bot: the store write a listener awaits before acking, and Bolt's dispatch."""

    accept_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # by message ts
    dispatch_s: dict[str, float] = field(default_factory=dict)  # by event_id
    turn_ids: list[int] = field(default_factory=list)
    in_accept: int = 0
    max_in_accept: int = 0

    def install(self, bot: Bot) -> None:
        """Wrap `bot.store.accept_message` and `bot.app.async_dispatch` (looked up per call) with timers."""
        accept, dispatch = bot.store.accept_message, bot.app.async_dispatch

        async def timed_accept(**kwargs: Any) -> Any:
            self.in_accept += 1
            self.max_in_accept = max(self.max_in_accept, self.in_accept)
            start = time.perf_counter()
            try:
                turn = await accept(**kwargs)
            finally:
                self.accept_s[str(kwargs.get("ts"))].append(time.perf_counter() - start)
                self.in_accept -= 1
            if turn is not None:
                self.turn_ids.append(turn.id)
            return turn

        async def timed_dispatch(req: Any) -> Any:
            start = time.perf_counter()
            try:
                return await dispatch(req)
            finally:
                body = req.body if isinstance(req.body, dict) else {}
                self.dispatch_s[str(body.get("event_id"))] = time.perf_counter() - start

        bot.store.accept_message = timed_accept  # type: ignore[method-assign]
        bot.app.async_dispatch = timed_dispatch  # type: ignore[method-assign]

    def reset(self) -> None:
        self.accept_s.clear()
        self.dispatch_s.clear()
        self.turn_ids.clear()
        self.max_in_accept = self.in_accept


class _LoopLag:
    """Samples how late a short sleep wakes up: how long a ready callback waits for the event loop."""

    def __init__(self) -> None:
        self.samples_s: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            start = loop.time()
            await asyncio.sleep(LOOP_LAG_PROBE_S)
            self.samples_s.append(loop.time() - start - LOOP_LAG_PROBE_S)


@dataclass
class ModeResult:
    """What one burst against one transport measured."""

    mode: str
    events: int
    deliveries: int = 0
    acks: int = 0
    retries: int = 0
    latencies_s: list[float] = field(default_factory=list)
    exactly_once: int = 0
    duplicated: int = 0
    missing: int = 0
    slack_answers: Counter[int] = field(default_factory=Counter)  # answers per thread -> threads
    openai_responses: Counter[int] = field(default_factory=Counter)  # responses per thread -> threads
    conversations: Counter[int] = field(default_factory=Counter)  # conversations per thread -> threads
    turn_status: Counter[str] = field(default_factory=Counter)
    auth_test_calls: int = 0
    burst_s: float = 0.0
    acked_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    probe: _Probe = field(default_factory=_Probe)
    accept_s: list[float] = field(default_factory=list)  # the burst's messages only
    dispatch_s: list[float] = field(default_factory=list)  # the burst's events only
    warm: bool = False
    loop_lag_s: list[float] = field(default_factory=list)
    note: str = ""


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@contextlib.asynccontextmanager
async def database_url(kind: str) -> AsyncIterator[str]:
    """A fresh database: a SQLite file in a temporary directory, or a throw-away PostgreSQL database."""
    if kind == "postgresql":
        async with postgres_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bot.sqlite3'}"


@contextlib.asynccontextmanager
async def serving_bot(slack: FakeSlack, oai: FakeOpenAI, url: str, *, mode: str, probe: _Probe) -> AsyncIterator[Bot]:
    """Build and serve a bot against the fakes (probe installed); stop it like SIGTERM on exit."""
    port = free_port() if mode == "http" else 0
    bot = await build_bot(Settings.from_env(bot_env(slack, oai, url, mode=mode, port=port)))
    probe.install(bot)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(bot, stop=stop, host="127.0.0.1"))
    try:
        if mode == "socket":
            await slack.wait_socket_connected()
        else:
            await wait_http_ready(port)
            slack.http_events_url = f"http://127.0.0.1:{port}/slack/events"
        yield bot
    finally:
        stop.set()
        await asyncio.wait_for(task, BOT_STOP_S)


async def _poll(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float) -> bool:
    """Wait until `predicate()` holds; False after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval_s)
    return True


def _burst_deliveries(slack: _BenchSlack, mode: str, burst_ids: set[str]) -> list[tuple[bool, float | None, int]]:
    """(acked, latency_s or None, retry_attempt) for every delivery attempt of the burst's events."""
    out: list[tuple[bool, float | None, int]] = []
    if mode == "socket":
        for env in slack.envelopes:
            if env["payload"]["event_id"] in burst_ids:
                latency = slack.acks.get(env["envelope_id"])
                out.append((latency is not None, latency, int(env.get("retry_attempt") or 0)))
        return out
    for event_id in burst_ids:
        for attempt, (status, latency) in enumerate(slack.http_by_event.get(event_id, [])):
            ok = 200 <= status < 300
            out.append((ok, latency if ok else None, attempt))
    return out


def _all_acked(slack: _BenchSlack, mode: str, burst_ids: set[str]) -> bool:
    acked: set[str] = set()
    if mode == "socket":
        acked = {env["payload"]["event_id"] for env in slack.envelopes if env["envelope_id"] in slack.acks}
    else:
        acked = {eid for eid, tries in slack.http_by_event.items() if any(200 <= s < 300 for s, _ in tries)}
    return burst_ids <= acked


def _answers_per_thread(slack: FakeSlack, roots: dict[int, str]) -> dict[int, int]:
    """Finished bot answers in each question's thread that answer that very question."""
    counts: dict[int, int] = {}
    for number, ts in roots.items():
        texts = answer_texts(slack, CHANNEL, ts)
        counts[number] = sum(1 for text in texts if (m := _QUESTION.search(text)) and int(m.group(1)) == number)
    return counts


def _responses_per_thread(oai: FakeOpenAI, roots: dict[int, str]) -> tuple[dict[int, int], dict[int, int]]:
    """POST /v1/responses per thread (via its conversations' metadata), and conversations per thread."""
    number_of = {ts: number for number, ts in roots.items()}
    thread_of_conv: dict[str, int] = {}
    conversations: dict[int, int] = dict.fromkeys(roots, 0)
    for conv_id, record in oai.conversations.items():
        number = number_of.get(str((record["object"].get("metadata") or {}).get("slack_thread_ts")))
        if number is not None:
            thread_of_conv[conv_id] = number
            conversations[number] += 1
    responses: dict[int, int] = dict.fromkeys(roots, 0)
    for request in oai.requests_to("POST", "/v1/responses"):
        if request.path.rstrip("/") != "/v1/responses" or not isinstance(request.json, dict):
            continue
        conv = request.json.get("conversation")
        conv_id = conv.get("id") if isinstance(conv, dict) else conv
        if conv_id in thread_of_conv:
            responses[thread_of_conv[conv_id]] += 1
    return responses, conversations


async def run_mode(
    mode: str, *, events: int, database: str, answer_timeout_s: float, settle_s: float = 0.0, warm: bool = False
) -> ModeResult:
    """Start fakes and a bot for `mode`, fire the burst, wait for acks and answers, and count.

    With `warm`, one mention is answered first, so Bolt's one-time `auth.test` and the connection pools
    are settled before the burst (a bot that has been running a while); otherwise the burst meets a cold bot.
    """
    result = ModeResult(mode=mode, events=events, warm=warm)
    async with contextlib.AsyncExitStack() as stack:
        slack = await stack.enter_async_context(_BenchSlack())
        oai = await stack.enter_async_context(FakeOpenAI())  # default script: an immediate echo
        url = await stack.enter_async_context(database_url(database))
        bot = await stack.enter_async_context(serving_bot(slack, oai, url, mode=mode, probe=result.probe))
        loop = asyncio.get_running_loop()
        if warm:
            first = await slack.user_posts(channel=CHANNEL, text=f"<@{slack.bot_user_id}> warm-up")
            await _poll(lambda: bool(answer_texts(slack, CHANNEL, first["ts"])), timeout_s=30, interval_s=0.05)
            await bot.scheduler.wait_idle(timeout=IDLE_WAIT_S)
        auth_tests_before = len(slack.calls_to("auth.test"))
        result.probe.reset()
        if settle_s:
            log.warning("%s bot ready; burst in %.1f s", mode, settle_s)
            await asyncio.sleep(settle_s)
        lag, stop_lag = _LoopLag(), asyncio.Event()
        lag_task = asyncio.create_task(lag.run(stop_lag))
        try:
            start = loop.time()
            posted = await asyncio.gather(
                *(slack.user_posts(channel=CHANNEL, text=f"<@{slack.bot_user_id}> question {i}") for i in range(events))
            )
            result.burst_s = loop.time() - start
            roots = {i: str(message["ts"]) for i, message in enumerate(posted)}
            root_ts = set(roots.values())
            burst_ids = {
                env["event_id"]
                for env in slack.events
                if env["event"].get("ts") in root_ts and env["event"].get("user") != slack.bot_user_id
            }
            all_acked = await _poll(lambda: _all_acked(slack, mode, burst_ids), timeout_s=ACK_WAIT_S, interval_s=0.02)
            result.acked_s = loop.time() - start
        finally:
            stop_lag.set()
            await lag_task
        if not all_acked:
            result.note = f"not every event was acknowledged within {ACK_WAIT_S:.0f} s"
        answered = await _poll(
            lambda: all(_answers_per_thread(slack, roots).values()),
            timeout_s=answer_timeout_s,
            interval_s=ANSWER_POLL_S,
        )
        result.wall_s = loop.time() - start
        if not answered:
            result.note = (
                result.note + "; " if result.note else ""
            ) + f"answers still missing after {answer_timeout_s:.0f} s"
        await bot.scheduler.wait_idle(timeout=IDLE_WAIT_S)

        deliveries = _burst_deliveries(slack, mode, burst_ids)
        result.deliveries = len(deliveries)
        result.acks = sum(1 for ok, _, _ in deliveries if ok)
        result.retries = sum(1 for _, _, attempt in deliveries if attempt > 0)
        result.latencies_s = [latency for ok, latency, _ in deliveries if ok and latency is not None]
        result.loop_lag_s = lag.samples_s
        result.auth_test_calls = len(slack.calls_to("auth.test")) - auth_tests_before
        result.accept_s = [d for ts in root_ts for d in result.probe.accept_s.get(ts, [])]
        result.dispatch_s = [d for eid, d in result.probe.dispatch_s.items() if eid in burst_ids]

        answers = _answers_per_thread(slack, roots)
        responses, conversations = _responses_per_thread(oai, roots)
        for number in roots:
            a, r = answers[number], responses[number]
            if a == 0:
                result.missing += 1
            elif a == 1 and r == 1:
                result.exactly_once += 1
            else:
                result.duplicated += 1
        result.slack_answers = Counter(answers.values())
        result.openai_responses = Counter(responses.values())
        result.conversations = Counter(conversations.values())
        for turn_id in result.probe.turn_ids:
            result.turn_status[await bot.store.turn_status(turn_id) or "?"] += 1
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _ms(value_s: float) -> str:
    return "-" if math.isnan(value_s) else f"{value_s * 1000:.1f}"


def _dist(values: Sequence[float]) -> str:
    return " / ".join(_ms(percentile(values, p)) for p in (50, 90, 99, 100))


def _spread(counts: Counter[int]) -> str:
    return ", ".join(f"{k}x:{n}" for k, n in sorted(counts.items())) or "-"


def render(results: Sequence[ModeResult], *, events: int, database: str) -> str:
    """The table: one column per mode."""
    rows: list[tuple[str, Callable[[ModeResult], str]]] = [
        ("events delivered (app_mention+message, incl. retries)", lambda r: str(r.deliveries)),
        ("acks (2xx / envelope acks)", lambda r: str(r.acks)),
        ("acked within Slack's 3 s budget", lambda r: str(sum(1 for x in r.latencies_s if x <= ACK_BUDGET_S))),
        ("retries by Slack (ack > 3 s or error)", lambda r: str(r.retries)),
        ("ack latency ms p50 / p90 / p99 / max", lambda r: _dist(r.latencies_s)),
        ("answered exactly once", lambda r: str(r.exactly_once)),
        ("answered more than once", lambda r: str(r.duplicated)),
        ("never answered", lambda r: str(r.missing)),
        ("total wall time s (burst -> last answer)", lambda r: f"{r.wall_s:.2f}"),
        ("peak RSS MB (process so far)", lambda r: f"{r.peak_rss_mb:.0f}"),
        ("-- detail", lambda r: ""),
        ("burst posted / all acked after s", lambda r: f"{r.burst_s:.2f} / {r.acked_s:.2f}"),
        ("Slack answers per thread (count:threads)", lambda r: _spread(r.slack_answers)),
        ("POST /v1/responses per thread", lambda r: _spread(r.openai_responses)),
        ("conversations per thread", lambda r: _spread(r.conversations)),
        ("turns by status", lambda r: ", ".join(f"{k}:{n}" for k, n in sorted(r.turn_status.items())) or "-"),
        ("auth.test calls during the burst", lambda r: str(r.auth_test_calls)),
        ("Store.accept_message ms p50 / p90 / p99 / max", lambda r: _dist(r.accept_s)),
        ("accept_message calls / max concurrent", lambda r: f"{len(r.accept_s)} / {r.probe.max_in_accept}"),
        ("Bolt dispatch ms p50 / p90 / p99 / max", lambda r: _dist(r.dispatch_s)),
        ("event-loop lag during burst ms p50/p90/p99/max", lambda r: _dist(r.loop_lag_s)),
    ]
    width = max(len(label) for label, _ in rows)
    col = max(28, *(len(get(r)) for _, get in rows for r in results))
    lines = [
        f"ack latency: {events} mentions in flight at once, database={database}, "
        + ("warm bot (one mention answered before the burst)" if results and results[0].warm else "cold bot"),
        f"{'':<{width}}  " + "  ".join(f"{r.mode:>{col}}" for r in results),
    ]
    for label, get in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{get(r):>{col}}" for r in results))
    for r in results:
        p99_ms = percentile(r.latencies_s, 99) * 1000
        met = p99_ms < ACK_GOAL_P99_MS and r.exactly_once == r.events
        verdict = "met" if met else "NOT met"
        lines.append(
            f"{r.mode}: goal (p99 < {ACK_GOAL_P99_MS:.0f} ms, all {r.events} answered exactly once) {verdict}"
            + (f" — {r.note}" if r.note else "")
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[ModeResult]:
    modes = ["socket", "http"] if args.mode == "both" else [args.mode]
    results = []
    for mode in modes:
        results.append(
            await asyncio.wait_for(
                run_mode(
                    mode,
                    events=args.events,
                    database=args.database,
                    answer_timeout_s=args.answer_timeout,
                    settle_s=args.settle,
                    warm=args.warm,
                ),
                args.answer_timeout + ACK_WAIT_S + 60,
            )
        )
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="mentions posted at once (default 200)")
    parser.add_argument("--mode", choices=["socket", "http", "both"], default="both")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--answer-timeout", type=float, default=ANSWER_TIMEOUT_S, help="seconds (default 120)")
    parser.add_argument(
        "--warm", action="store_true", help="answer one mention before the burst (default: burst meets a cold bot)"
    )
    parser.add_argument(
        "--settle", type=float, default=0.0, help="seconds between bot ready and burst (to attach a profiler)"
    )
    parser.add_argument("--log-level", default="WARNING", help="bot log level (default WARNING)")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = asyncio.run(main_async(args))
    print(render(results, events=args.events, database=args.database))
    return 0


if __name__ == "__main__":
    sys.exit(main())
