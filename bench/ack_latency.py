"""How fast the bot acknowledges Slack when a burst of mentions arrives at once, and whether each is answered once.

Run: `python -m bench.ack_latency [--events 200] [--mode socket|http|both] [--database sqlite|postgresql]
[--streaming 16] [--repeat 1]` (`--warm` answers one mention first; `--fakes inprocess` puts the fakes on the
bot's event loop, as the scenario tests do; `--settle S` pauses before the burst so a profiler can attach).

On 127.0.0.1 only: the loopback FakeSlack and FakeOpenAI from `tests.fakes` (see `bench.ack_fakes`), and a real
bot wired as the scenario tests wire it (`bot.app.build_bot` + `serve`, settings from `tests.conftest.bot_env`).
First `--streaming` people mention the bot and their answers start streaming (long answers, several seconds
each; the default, 16, fills every turn slot), so the burst meets a bot at work. Then N people each post
`<@UBOT> question i` as a new top-level message in C1 at the same moment; like real Slack, each post yields an
`app_mention` and a `message` event, so 2N deliveries are in flight together. Measured per delivery, by the
fake Slack:

- Socket Mode: envelope sent -> `{"envelope_id"}` ack received (FakeSlack's `acks`);
- HTTP: signed POST sent -> response (FakeSlack's `_post_event`, tagged with the event it carried).

Then it waits (bounded) until every message is answered and counts, per thread, the bot's answers in Slack and
the `POST /v1/responses` for the thread's conversation in OpenAI. Slack allows 3 s to ack; the goal is
p99 <= 100 ms in HTTP mode with 400 deliveries in flight and every message answered exactly once.

Before each bot run the same burst is sent, against fresh fakes, to a floor app on the same transport
(`bench.ack_floor`: verify the signature and answer 200, or ack the envelope; nothing else), and the bot's
p99 is reported as a multiple of the floor's. `--repeat R` alternates floor and bot R times per mode.

By default the fakes run in a child process so that their own work (building and sending 2N events, serving
the bot's Web API calls, streaming answers) does not queue on the bot's event loop; the bot's process then
holds only the bot, and its peak RSS is the bot's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from bench.ack_fakes import FakesSide, call
from bench.ack_floor import serving_floor
from bot.app import Bot, build_bot, serve
from bot.config import Settings
from tests.conftest import bot_env, free_port, postgres_database

ACK_GOAL_P99_MS = 100.0  # HTTP mode; Socket Mode keeps its own earlier figure
DEFAULT_STREAMING = 16  # answers being written when the burst arrives: every turn slot (MAX_CONCURRENT_TURNS)
ACK_BUDGET_S = 3.0  # Slack's
ANSWER_TIMEOUT_S = 120.0
ACK_WAIT_S = 20.0  # 3 s budget x (1 try + 3 retries), and some
IDLE_WAIT_S = 15.0
LOAD_IDLE_WAIT_S = 30.0  # the earlier answers may still be streaming after the burst's are done
BOT_STOP_S = 15.0
RPC_TIMEOUT_S = 60.0
LOOP_LAG_PROBE_S = 0.005
PROJECT_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("bench.ack_latency")


class Side(Protocol):
    async def call(self, name: str, **args: Any) -> Any: ...


class _InProcess:
    """The fakes on this event loop."""

    def __init__(self, side: FakesSide) -> None:
        self._side = side

    async def call(self, name: str, **args: Any) -> Any:
        return await call(self._side, name, args)


class _Child:
    """The fakes in a child process (`python -m bench.ack_fakes`), spoken to in JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    async def read(self, timeout_s: float) -> Any:
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"fakes process ended (exit {await self._proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"fakes process: {reply['error']}")
        return reply["ok"]

    async def send(self, name: str, args: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"call": name, "args": args}).encode() + b"\n")
        await self._proc.stdin.drain()

    async def call(self, name: str, **args: Any) -> Any:
        await self.send(name, args)
        return await self.read(RPC_TIMEOUT_S + float(args.get("timeout_s") or 0))


@contextlib.asynccontextmanager
async def fakes(where: str) -> AsyncIterator[Side]:
    """Start the fakes in this process or in a child; stop them on exit."""
    if where == "inprocess":
        side = FakesSide()
        await side.start()
        try:
            yield _InProcess(side)
        finally:
            await side.close()
        return
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.ack_fakes",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    child = _Child(proc)
    try:
        yield child
    finally:
        with contextlib.suppress(Exception):
            await child.send("close", {})
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@dataclass
class _Probe:
    """Timings taken inside the bot: the store write a listener awaits before acking, and Bolt's dispatch."""

    accept_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # by message ts
    dispatch_s: dict[str, float] = field(default_factory=dict)  # by event_id
    turn_ids: list[int] = field(default_factory=list)
    in_accept: int = 0
    max_in_accept: int = 0

    def install(self, bot: Bot) -> None:
        """Wrap `bot.store.accept_message` and `bot.app.async_dispatch` (both looked up per call) with timers."""
        accept, dispatch = bot.store.accept_message, bot.app.async_dispatch

        async def timed_accept(incoming: Any) -> Any:
            self.in_accept += 1
            self.max_in_accept = max(self.max_in_accept, self.in_accept)
            start = time.perf_counter()
            try:
                turn = await accept(incoming)
            finally:
                self.accept_s[str(incoming.ts)].append(time.perf_counter() - start)
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


class _GcPauses:
    """Garbage-collector pauses (generation, seconds) while installed: a full collection stops the loop."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((int(info["generation"]), time.perf_counter() - self._started))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        gc.callbacks.append(self._callback)
        try:
            yield
        finally:
            gc.callbacks.remove(self._callback)


@dataclass
class ModeResult:
    """What one burst against one transport measured; `fakes` holds `FakesSide.count()`."""

    mode: str
    events: int
    warm: bool
    fakes_where: str
    streaming: int = 0
    streaming_at_burst: int = 0
    floor_latencies_s: list[float] = field(default_factory=list)
    fakes: dict[str, Any] = field(default_factory=dict)
    burst_s: float = 0.0
    acked_s: float = 0.0
    wall_s: float = 0.0
    accept_s: list[float] = field(default_factory=list)  # the burst's messages only
    dispatch_s: list[float] = field(default_factory=list)  # the burst's events only
    max_in_accept: int = 0
    loop_lag_s: list[float] = field(default_factory=list)
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)
    turn_status: Counter[str] = field(default_factory=Counter)
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def latencies_s(self) -> list[float]:
        return list(self.fakes.get("latencies_s", []))

    @property
    def ratio_p99(self) -> float:
        """The bot's p99 acknowledgement as a multiple of the floor's (same burst, same run)."""
        return percentile(self.latencies_s, 99) / percentile(self.floor_latencies_s, 99)


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
async def serving_bot(info: dict[str, str], url: str, *, mode: str, port: int, probe: _Probe) -> AsyncIterator[Bot]:
    """Build and serve a bot aimed at the fakes (probe installed); stop it like SIGTERM on exit."""
    slack = SimpleNamespace(**info)
    oai = SimpleNamespace(api_key=info["openai_api_key"], base_url=info["openai_base_url"])
    bot = await build_bot(Settings.from_env(bot_env(slack, oai, url, mode=mode, port=port)))  # type: ignore[arg-type]
    probe.install(bot)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(bot, stop=stop, host="127.0.0.1"))
    try:
        yield bot
    finally:
        stop.set()
        await asyncio.wait_for(task, BOT_STOP_S)


async def run_floor(mode: str, *, events: int, fakes_where: str = "subprocess") -> list[float]:
    """Fresh fakes and the floor app for `mode` (`bench.ack_floor`); the same burst; its ack latencies."""
    async with fakes(fakes_where) as side:
        info = await side.call("info")
        port = free_port() if mode == "http" else 0
        async with serving_floor(info, mode=mode, port=port):
            await side.call("connect", mode=mode, port=port)
            await side.call("fire", events=events)
            acked = await side.call("wait_acked", timeout_s=ACK_WAIT_S)
            if not acked["ok"]:
                raise RuntimeError(f"the {mode} floor did not acknowledge every event")
            counted = await side.call("count")
    return list(counted["latencies_s"])


async def run_mode(
    mode: str,
    *,
    events: int,
    database: str,
    answer_timeout_s: float = ANSWER_TIMEOUT_S,
    warm: bool = False,
    fakes_where: str = "subprocess",
    settle_s: float = 0.0,
    streaming: int = 0,
) -> ModeResult:
    """Start fakes and a bot for `mode`, fire the burst, wait for acks and answers, and count.

    With `warm`, one mention is answered first, so Bolt's one-time `auth.test` and the connection pools are
    settled before the burst (a bot that has been running a while); otherwise the burst meets a fresh bot.
    With `streaming`, that many earlier mentions are being answered (streaming) when the burst arrives.
    """
    result = ModeResult(mode=mode, events=events, warm=warm, fakes_where=fakes_where, streaming=streaming)
    probe = _Probe()
    async with fakes(fakes_where) as side, database_url(database) as url:
        info = await side.call("info")
        port = free_port() if mode == "http" else 0
        async with serving_bot(info, url, mode=mode, port=port, probe=probe) as bot:
            await side.call("connect", mode=mode, port=port)
            if warm:
                if not await side.call("warm_up"):
                    result.notes.append("warm-up mention not answered")
                await bot.scheduler.wait_idle(timeout=IDLE_WAIT_S)
            if streaming:
                loaded = await side.call("load", streams=streaming)
                if not loaded["ok"]:
                    result.notes.append(f"only {loaded['streaming']} of {streaming} earlier answers were streaming")
            if settle_s:
                log.warning("%s bot ready; burst in %.1f s", mode, settle_s)
                await asyncio.sleep(settle_s)
            probe.reset()
            lag, stop_lag, gc_pauses = _LoopLag(), asyncio.Event(), _GcPauses()
            lag_task = asyncio.create_task(lag.run(stop_lag))
            try:
                with gc_pauses.installed():
                    fired = await side.call("fire", events=events)
                    acked = await side.call("wait_acked", timeout_s=ACK_WAIT_S)
                    result.streaming_at_burst = int(acked.get("streaming", 0))
            finally:
                stop_lag.set()
                await lag_task
            if not acked["ok"]:
                result.notes.append(f"not every event was acknowledged within {ACK_WAIT_S:.0f} s")
            answered = await side.call("wait_answered", timeout_s=answer_timeout_s)
            if not answered["ok"]:
                result.notes.append(f"answers still missing after {answer_timeout_s:.0f} s")
            if not await bot.scheduler.wait_idle(timeout=IDLE_WAIT_S + LOAD_IDLE_WAIT_S * bool(streaming)):
                result.notes.append(f"turns still running {IDLE_WAIT_S:.0f} s after the last answer")
            result.fakes = await side.call("count")
            for turn_id in probe.turn_ids:
                result.turn_status[await bot.store.turn_status(turn_id) or "?"] += 1
        root_ts, event_ids = set(fired["root_ts"]), set(fired["event_ids"])
        result.burst_s, result.acked_s, result.wall_s = fired["burst_s"], acked["after_s"], answered["after_s"]
        result.accept_s = [d for ts in root_ts for d in probe.accept_s.get(ts, [])]
        result.dispatch_s = [d for eid, d in probe.dispatch_s.items() if eid in event_ids]
        result.max_in_accept = probe.max_in_accept
        result.loop_lag_s = lag.samples_s
        result.gc_pauses = gc_pauses.pauses
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _ms(value_s: float) -> str:
    return "-" if math.isnan(value_s) else f"{value_s * 1000:.1f}"


def _dist(values: Sequence[float]) -> str:
    return " / ".join(_ms(percentile(values, p)) for p in (50, 90, 99, 100))


def _spread(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}x:{n}" for k, n in sorted(counts.items(), key=lambda kv: int(kv[0]))) or "-"


def _gc_summary(r: ModeResult) -> str:
    full = sum(1 for generation, _ in r.gc_pauses if generation == 2)
    longest = max((pause for _, pause in r.gc_pauses), default=math.nan)
    return f"{len(r.gc_pauses)} / {full} / {_ms(longest)}"


def render(results: Sequence[ModeResult], *, database: str) -> str:
    """The table: one column per mode, then a verdict line per mode."""
    first = results[0]
    rss_label = "bot process" if first.fakes_where == "subprocess" else "bot + fakes process"
    rows: list[tuple[str, Callable[[ModeResult], str]]] = [
        ("events delivered (app_mention+message, incl. retries)", lambda r: str(r.fakes["deliveries"])),
        ("acks (2xx / envelope acks)", lambda r: str(r.fakes["acks"])),
        ("acked within Slack's 3 s budget", lambda r: str(sum(1 for x in r.latencies_s if x <= ACK_BUDGET_S))),
        ("retries by Slack (ack > 3 s or error)", lambda r: str(r.fakes["retries"])),
        ("ack latency ms p50 / p90 / p99 / max", lambda r: _dist(r.latencies_s)),
        ("floor ack latency ms p50 / p90 / p99 / max", lambda r: _dist(r.floor_latencies_s)),
        ("bot p99 / floor p99", lambda r: f"{r.ratio_p99:.1f}x"),
        ("earlier answers streaming: before / after the burst", lambda r: f"{r.streaming} / {r.streaming_at_burst}"),
        ("answered exactly once", lambda r: str(r.fakes["exactly_once"])),
        ("answered more than once", lambda r: str(r.fakes["duplicated"])),
        ("never answered", lambda r: str(r.fakes["missing"])),
        ("total wall time s (burst -> last answer)", lambda r: f"{r.wall_s:.2f}"),
        (f"peak RSS MB ({rss_label}, so far)", lambda r: f"{r.peak_rss_mb:.0f}"),
        ("-- detail", lambda r: ""),
        ("burst posted / all acked after s", lambda r: f"{r.burst_s:.2f} / {r.acked_s:.2f}"),
        ("Slack answers per thread (count:threads)", lambda r: _spread(r.fakes["slack_answers"])),
        ("POST /v1/responses per thread", lambda r: _spread(r.fakes["openai_responses"])),
        ("conversations per thread", lambda r: _spread(r.fakes["conversations"])),
        ("turns by status", lambda r: ", ".join(f"{k}:{n}" for k, n in sorted(r.turn_status.items())) or "-"),
        ("auth.test calls during the burst", lambda r: str(r.fakes["auth_test_calls"])),
        ("Store.accept_message ms p50 / p90 / p99 / max", lambda r: _dist(r.accept_s)),
        ("accept_message calls / max concurrent", lambda r: f"{len(r.accept_s)} / {r.max_in_accept}"),
        ("Bolt dispatch ms (burst events Bolt saw) p50/p90/p99/max", lambda r: _dist(r.dispatch_s)),
        ("bot event-loop lag during burst ms p50/p90/p99/max", lambda r: _dist(r.loop_lag_s)),
        ("bot GC during burst: collections / full / longest ms", _gc_summary),
    ]
    width = max(len(label) for label, _ in rows)
    col = max(28, *(len(get(r)) for _, get in rows for r in results))
    bot_state = "warm bot (one mention answered first)" if first.warm else "fresh bot"
    bot_state += f"; {first.streaming} earlier answers streaming" if first.streaming else "; idle"
    lines = [
        f"ack latency: {first.events} mentions in flight at once; database={database}; {bot_state}; "
        f"fakes {'in a child process' if first.fakes_where == 'subprocess' else 'on the bot event loop'}",
        f"{'':<{width}}  " + "  ".join(f"{r.mode:>{col}}" for r in results),
    ]
    lines += [f"{label:<{width}}  " + "  ".join(f"{get(r):>{col}}" for r in results) for label, get in rows]
    for r in results:
        met = percentile(r.latencies_s, 99) * 1000 <= ACK_GOAL_P99_MS and r.fakes["exactly_once"] == r.events
        goal = f"p99 <= {ACK_GOAL_P99_MS:.0f} ms, all {r.events} answered exactly once"
        lines.append(f"{r.mode}: goal ({goal}) {'met' if met else 'NOT met'}" + "".join(f"; {n}" for n in r.notes))
    return "\n".join(lines)


def render_summary(results: Sequence[ModeResult]) -> str:
    """One line per run: the floor's and the bot's p50 / p99 and their ratio; then the spread per mode."""
    lines = ["run  mode    floor p50 / p99 ms   bot p50 / p99 ms   bot p99 / floor p99   exactly once"]
    for i, r in enumerate(results, 1):
        floor = f"{_ms(percentile(r.floor_latencies_s, 50))} / {_ms(percentile(r.floor_latencies_s, 99))}"
        bot = f"{_ms(percentile(r.latencies_s, 50))} / {_ms(percentile(r.latencies_s, 99))}"
        once = f"{r.fakes['exactly_once']} / {r.events}"
        lines.append(f"{i:>3}  {r.mode:<6}  {floor:>18}   {bot:>16}   {r.ratio_p99:>18.1f}x   {once:>12}")
    for mode in dict.fromkeys(r.mode for r in results):
        runs = [r for r in results if r.mode == mode]
        p99s = sorted(percentile(r.latencies_s, 99) * 1000 for r in runs)
        floors = sorted(percentile(r.floor_latencies_s, 99) * 1000 for r in runs)
        ratios = sorted(r.ratio_p99 for r in runs)
        lines.append(
            f"{mode}: {len(runs)} run(s); bot p99 {p99s[0]:.1f}-{p99s[-1]:.1f} ms, floor p99 "
            f"{floors[0]:.1f}-{floors[-1]:.1f} ms, ratio {ratios[0]:.1f}-{ratios[-1]:.1f}x"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[ModeResult]:
    modes = ["socket", "http"] if args.mode == "both" else [args.mode]
    results = []
    for _ in range(args.repeat):
        for mode in modes:
            floor = await asyncio.wait_for(run_floor(mode, events=args.events, fakes_where=args.fakes), 120)
            run = run_mode(
                mode,
                events=args.events,
                database=args.database,
                answer_timeout_s=args.answer_timeout,
                warm=args.warm,
                fakes_where=args.fakes,
                settle_s=args.settle,
                streaming=args.streaming,
            )
            timeout_s = args.answer_timeout + ACK_WAIT_S + LOAD_IDLE_WAIT_S + args.settle + 120
            result = await asyncio.wait_for(run, timeout_s)
            result.floor_latencies_s = floor
            results.append(result)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="mentions posted at once (default 200)")
    parser.add_argument("--mode", choices=["socket", "http", "both"], default="both")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--warm", action="store_true", help="answer one mention before the burst")
    parser.add_argument(
        "--streaming",
        type=int,
        default=DEFAULT_STREAMING,
        help=f"earlier answers being streamed when the burst arrives (default {DEFAULT_STREAMING}; 0: an idle bot)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="floor + bot runs per mode, alternating (default 1)")
    parser.add_argument(
        "--fakes",
        choices=["subprocess", "inprocess"],
        default="subprocess",
        help="run the fakes in a child process (default) or on the bot's event loop as the tests do",
    )
    parser.add_argument("--answer-timeout", type=float, default=ANSWER_TIMEOUT_S, help="seconds (default 120)")
    parser.add_argument("--settle", type=float, default=0.0, help="pause before the burst (to attach a profiler)")
    parser.add_argument("--log-level", default="WARNING", help="log level (default WARNING)")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    if args.streaming < 0 or args.repeat < 1:
        parser.error("--streaming must be at least 0 and --repeat at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = asyncio.run(main_async(args))
    for i in range(0, len(results), 2 if args.mode == "both" else 1):
        print(render(results[i : i + (2 if args.mode == "both" else 1)], database=args.database), end="\n\n")
    print(render_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
