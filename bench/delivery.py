"""How soon a streamed answer becomes visible in Slack, how many Web API calls a turn costs, and how long it takes.

Run: `python -m bench.delivery [--turns 50] [--concurrency 1] [--warmup 1] [--delay 0.005]`.

Everything runs in this process on 127.0.0.1: the loopback FakeSlack and FakeOpenAI of `tests.fakes` and a real
bot started by `tests.conftest.run_bot` (Socket Mode, SQLite in a temporary directory). User U1 (ko-KR) posts
`--turns` distinct top-level mentions in C1. With `--concurrency 1` (the default) they are answered one after
another: the next mention is posted only when the previous turn has cleared its status and the bot is idle.
With `--concurrency K`, K posters each do the same, so K turns are in flight at once. `--warmup` turns are
answered first and not counted (Bolt's first `auth.test`, connection pools, SQLite's first writes).

Every response is the same realistic answer (`ANSWER`, ~1,500 characters of Korean + English Markdown with
headings, a list, a table and a code block), which the fake streams as 20-character `output_text.delta` events
with `--delay` seconds of sleep after every SSE event (token pacing).

Timestamps (`time.perf_counter`, one process, one clock) are taken from outside the fakes, which are unchanged:

- FakeOpenAI is subclassed and its `_events` generator wrapped: the first `response.output_text.delta` of a
  response is stamped as it is handed to the SSE writer (serialised and written right after, no await between);
- FakeSlack is subclassed: its `calls` list stamps each Web API call as it is recorded (body parsed, just before
  the method runs and the message becomes visible), and `_handle_api` stamps when the method has answered;
- `bot.slack.reply.ThreadReply.write` is wrapped at run time (not edited) to stamp when the bot got its first text.

Per turn: (a) first delta written by FakeOpenAI -> first text visible in Slack (the `chat.startStream`, or the
fallback `chat.postMessage`, carrying text, arriving at FakeSlack); (b) Slack Web API calls attributed to the
turn's thread, by method; (c) end to end: user post -> `chat.stopStream` arriving (the last text call if the
bot fell back to post + update). Percentiles are nearest-rank (with 50 turns, p99 is the largest value).
Also shown: where (a) and (c) go, whether the bot's last `setStatus` before the text ("writing", sent on the
message's `output_item.added`) was still unanswered when the first delta was written (then the delta waits for
it), and how many TCP connections each turn's Web API calls arrived on (the client's peer address per call).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import logging
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.slack.reply import ThreadReply
from tests.conftest import answer_texts, run_bot
from tests.fakes.openai_fake import TEXT_DELTA_CHARS, FakeOpenAI, Script
from tests.fakes.slack import FakeSlack, RecordedCall

CHANNEL = "C1"
DELTA_DELAY_S = 0.005
TURN_TIMEOUT_S = 30.0
IDLE_WAIT_S = 15.0
RUN_TIMEOUT_PER_TURN_S = 10.0  # the whole run is bounded by warm-up + turns times this (plus a minute)

SET_STATUS = "assistant.threads.setStatus"
START_STREAM = "chat.startStream"
STOP_STREAM = "chat.stopStream"
POST_MESSAGE = "chat.postMessage"
UPDATE = "chat.update"
TEXT_OPENERS = (START_STREAM, POST_MESSAGE)
METHOD_ROWS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("assistant.threads.setStatus", lambda m: m == SET_STATUS),
    ("chat.startStream", lambda m: m == START_STREAM),
    ("chat.appendStream", lambda m: m == "chat.appendStream"),
    ("chat.stopStream", lambda m: m == STOP_STREAM),
    ("chat.postMessage", lambda m: m == POST_MESSAGE),
    ("chat.update", lambda m: m == UPDATE),
    ("files.*", lambda m: m.startswith("files.")),
)

QUESTION = "이 파일로 월별·지역별 매출을 분석해 주세요. Which region grew fastest?"
ANSWER = """\
## 분석 요약 (Summary)

업로드하신 `sales_2024.csv` 파일(**12,480행 × 9열**)을 pandas로 불러와 월별·지역별 매출을 분석했습니다. \
Overall, revenue grew **18.4% YoY**, driven mostly by the 서울 and 부산 regions.

### 주요 발견 (Key findings)

1. **월별 추세**: 3월과 11월에 매출이 가장 높았습니다 (peaks in March and November). \
여름(7–8월)에는 평균보다 약 12% 낮았습니다.
2. **지역별 비중**: 서울 41.2%, 부산 18.7%, 대구 11.3%, 기타 28.8%.
3. **상위 제품**: `Premium Plan`이 전체 매출의 27%를 차지하지만 주문 수로는 9%에 불과합니다 — \
high ticket, low volume.
4. **이상치 (outliers)**: 2024-06-14에 단일 주문 금액이 ₩48,000,000으로 기록되어 있습니다. \
입력 오류일 가능성이 있어 확인이 필요합니다.
5. **요일 효과**: 주말(토·일) 매출이 평일보다 평균 23% 높았고, especially on Saturday evenings after 6 p.m. \
반면 월요일 오전 주문은 가장 적었습니다.

### 지역별 요약표

| 지역 | 매출 (백만 원) | 전년 대비 | 주문 수 |
|---|---:|---:|---:|
| 서울 | 1,284.5 | +21.3% | 4,812 |
| 부산 | 583.2 | +16.9% | 2,107 |
| 대구 | 352.0 | +9.8% | 1,433 |
| 기타 | 897.6 | +17.1% | 4,128 |

### 사용한 코드

```python
df = pd.read_csv("/mnt/data/sales_2024.csv", parse_dates=["주문일"])
monthly = df.groupby(df["주문일"].dt.to_period("M"))["매출"].sum()
by_region = df.pivot_table(index="지역", values="매출", aggfunc="sum").sort_values("매출")
```

### 다음 단계 제안 (Next steps)

- 이상치 주문을 제외하고 다시 계산해 볼까요? (I can re-run the numbers without the outlier.)
- 제품군별 **월간 성장률 차트**를 PNG로 만들어 드릴 수 있습니다.
- 분기별 결과를 엑셀(`.xlsx`) 보고서로 정리해 드릴 수도 있습니다 (one sheet per region).
- 고객 세그먼트(신규 vs 재구매)로 나누어 보면 성장 요인이 더 분명해질 것 같습니다. \
Segmenting new vs returning customers would show where the growth really comes from.

궁금한 점이 있으면 이 스레드에 이어서 질문해 주세요. Feel free to ask follow-ups in this thread."""

log = logging.getLogger("bench.delivery")

# The FakeSlack request being handled in this task, so the recorded call can be matched to its handler.
_IN_FLIGHT: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("bench_delivery_call", default=None)


# ------------------------------------------------------------------ the fakes, stamped from outside
class _TimedCalls(list[RecordedCall]):
    """FakeSlack's `calls`, plus when each call was recorded (`arrived`) and when its method answered."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []
        self.answered: list[float] = []
        self.peers: list[Any] = []  # the client's (host, port): one per TCP connection

    def append(self, call: RecordedCall) -> None:
        self.arrived.append(time.perf_counter())
        self.answered.append(math.nan)
        self.peers.append(None)
        super().append(call)
        slot = _IN_FLIGHT.get()
        if slot is not None:
            slot["index"] = len(self) - 1


class _BenchSlack(FakeSlack):
    """FakeSlack with timestamped Web API calls and a waitable "status cleared" per thread (a turn's last call)."""

    def __init__(self) -> None:
        super().__init__()
        self.timed = _TimedCalls()
        self.calls = self.timed
        self._cleared: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        slot: dict[str, int] = {}
        token = _IN_FLIGHT.set(slot)
        try:
            return await super()._handle_api(request)
        finally:
            _IN_FLIGHT.reset(token)
            index = slot.get("index")
            if index is not None:
                self.timed.answered[index] = time.perf_counter()
                if request.transport is not None:
                    self.timed.peers[index] = request.transport.get_extra_info("peername")
                call = self.timed[index]
                if call.method == SET_STATUS and call.params.get("status") == "" and call.status == 200:
                    self._cleared[str(call.params.get("thread_ts"))].set()

    async def wait_cleared(self, thread_ts: str, *, timeout_s: float) -> None:
        """Wait for an explicit `setStatus("")` in the thread: the conductor's last call of a turn."""
        await asyncio.wait_for(self._cleared[thread_ts].wait(), timeout_s)


class _BenchOpenAI(FakeOpenAI):
    """FakeOpenAI that stamps, per Slack thread (the `slack_ts` metadata the bot sends), its text deltas."""

    def __init__(self) -> None:
        super().__init__()
        self.first_delta_at: dict[str, float] = {}
        self.last_delta_at: dict[str, float] = {}
        self.done_at: dict[str, float] = {}  # the terminal event (response.completed / incomplete / failed)
        self.deltas: Counter[str] = Counter()
        self.responses_for: Counter[str] = Counter()

    async def _events(self, run: Any) -> AsyncGenerator[dict[str, Any], None]:
        key = str((run.response.get("metadata") or {}).get("slack_ts"))
        self.responses_for[key] += 1
        async with contextlib.aclosing(super()._events(run)) as events:
            async for event in events:
                if event["type"] == "response.output_text.delta":
                    now = time.perf_counter()
                    self.first_delta_at.setdefault(key, now)
                    self.last_delta_at[key] = now
                    self.deltas[key] += 1
                elif event["type"] in ("response.completed", "response.incomplete", "response.failed", "error"):
                    self.done_at[key] = time.perf_counter()
                yield event


@contextlib.contextmanager
def _first_writes(into: dict[str, float]) -> Iterator[None]:
    """Wrap `ThreadReply.write` (restored afterwards) to stamp the first text the bot got in each thread."""
    original: Callable[[ThreadReply, str], Awaitable[None]] = ThreadReply.write

    async def write(self: ThreadReply, text: str) -> None:
        into.setdefault(self._thread.thread_ts, time.perf_counter())
        await original(self, text)

    ThreadReply.write = write  # type: ignore[method-assign]
    try:
        yield
    finally:
        ThreadReply.write = original  # type: ignore[method-assign]


# ------------------------------------------------------------------ one run
@dataclass
class Turn:
    """One measured turn: stamps in seconds on `time.perf_counter`, and its Web API calls by method."""

    root_ts: str
    posted_at: float
    first_delta_at: float = math.nan
    last_delta_at: float = math.nan
    done_at: float = math.nan
    bot_first_write_at: float = math.nan
    first_visible_at: float = math.nan
    first_visible_method: str = ""
    first_visible_answered_at: float = math.nan
    status_before_text_arrived_at: float = math.nan  # the last setStatus before the first text ("writing")
    status_before_text_answered_at: float = math.nan
    end_at: float = math.nan
    end_method: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    peers: set[Any] = field(default_factory=set)  # distinct client connections the turn's calls came on
    complete: bool = False  # the thread shows exactly the answer, finished
    responses: int = 0


@dataclass
class Result:
    turns: list[Turn]
    concurrency: int
    warmup: int
    delay_s: float
    deltas_per_answer: int
    unattributed: Counter[str]
    wall_s: float


async def _one_turn(slack: _BenchSlack, number: int) -> tuple[str, float]:
    posted_at = time.perf_counter()
    message = await slack.user_posts(channel=CHANNEL, text=f"<@{slack.bot_user_id}> {QUESTION} (#{number})")
    root = str(message["ts"])
    await slack.wait_cleared(root, timeout_s=TURN_TIMEOUT_S)
    return root, posted_at


def _thread_of(call: RecordedCall, roots: set[str], reply_root: dict[str, str]) -> str | None:
    """The thread a Web API call belongs to: by `thread_ts`, or by the bot message `ts` it edits."""
    thread_ts = call.params.get("thread_ts")
    if thread_ts in roots:
        return str(thread_ts)
    ts = str(call.params.get("ts", ""))
    if ts in roots:
        return ts
    return reply_root.get(ts)


def _collect(
    slack: _BenchSlack,
    oai: _BenchOpenAI,
    first_writes: dict[str, float],
    posted: list[tuple[str, float]],
    warmup_roots: list[str],
) -> tuple[list[Turn], Counter[str]]:
    """Per-turn figures for the `posted` turns; calls of no thread at all (warm-up turns excluded) by method."""
    roots = {root for root, _ in posted} | set(warmup_roots)
    reply_root = {m.ts: root for root in roots for m in slack.thread(CHANNEL, root) if m.bot}
    by_thread: dict[str, list[int]] = defaultdict(list)
    unattributed: Counter[str] = Counter()
    for index, call in enumerate(slack.timed):
        thread = _thread_of(call, roots, reply_root)
        if thread is None:
            unattributed[call.method] += 1
        else:
            by_thread[thread].append(index)
    turns = []
    for root, posted_at in posted:
        turn = Turn(root_ts=root, posted_at=posted_at)
        turn.first_delta_at = oai.first_delta_at.get(root, math.nan)
        turn.last_delta_at = oai.last_delta_at.get(root, math.nan)
        turn.done_at = oai.done_at.get(root, math.nan)
        turn.bot_first_write_at = first_writes.get(root, math.nan)
        turn.responses = oai.responses_for[root]
        last_status: int | None = None
        last_text: int | None = None
        stop: int | None = None
        for index in by_thread[root]:
            call = slack.timed[index]
            turn.calls[call.method] += 1
            turn.peers.add(slack.timed.peers[index])
            has_text = bool(call.params.get("markdown_text") or call.params.get("text") or call.params.get("chunks"))
            if call.method in TEXT_OPENERS and has_text and math.isnan(turn.first_visible_at):
                turn.first_visible_at = slack.timed.arrived[index]
                turn.first_visible_answered_at = slack.timed.answered[index]
                turn.first_visible_method = call.method
            if call.method == SET_STATUS and math.isnan(turn.first_visible_at):
                last_status = index
            if call.method == STOP_STREAM:
                stop = index
            if call.method in (POST_MESSAGE, UPDATE, "chat.appendStream", START_STREAM):
                last_text = index
        if last_status is not None:
            turn.status_before_text_arrived_at = slack.timed.arrived[last_status]
            turn.status_before_text_answered_at = slack.timed.answered[last_status]
        end = stop if stop is not None else last_text
        if end is not None:
            turn.end_at = slack.timed.arrived[end]
            turn.end_method = slack.timed[end].method
        texts = answer_texts(slack, CHANNEL, root)
        turn.complete = "\n".join(texts).strip() == ANSWER.strip()
        turns.append(turn)
    return turns, unattributed


async def run(*, turns: int, concurrency: int, warmup: int, delay_s: float) -> Result:
    """Start the fakes and a bot, answer `warmup` then `turns` mentions, and measure the latter."""
    first_writes: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        slack = await stack.enter_async_context(_BenchSlack())
        oai = await stack.enter_async_context(_BenchOpenAI())
        oai.default_script = lambda body: Script(text=ANSWER, delay_s=delay_s)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-delivery-"))
        stack.enter_context(_first_writes(first_writes))
        running = await stack.enter_async_context(run_bot(slack, oai, f"sqlite:///{Path(tmp) / 'bot.sqlite3'}"))
        bot = running.bot

        warmup_roots = []
        for number in range(warmup):
            warmup_roots.append((await _one_turn(slack, -1 - number))[0])
            await bot.scheduler.wait_idle(timeout=IDLE_WAIT_S)

        numbers = iter(range(turns))
        posted: list[tuple[str, float]] = []

        async def poster() -> None:
            for number in numbers:
                posted.append(await _one_turn(slack, number))
                if concurrency == 1:
                    # Nothing of this turn (the store's last write) overlaps the next one.
                    await bot.scheduler.wait_idle(timeout=IDLE_WAIT_S)

        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(poster())
        await bot.scheduler.wait_idle(timeout=IDLE_WAIT_S)
        wall_s = time.perf_counter() - start
        measured, unattributed = _collect(slack, oai, first_writes, posted, warmup_roots)
    return Result(
        turns=measured,
        concurrency=concurrency,
        warmup=warmup,
        delay_s=delay_s,
        deltas_per_answer=math.ceil(len(ANSWER) / TEXT_DELTA_CHARS),
        unattributed=unattributed,
        wall_s=wall_s,
    )


# ------------------------------------------------------------------ report
def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of the values that are not NaN; NaN if there are none."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _ms(value_s: float) -> str:
    return "-" if math.isnan(value_s) else f"{value_s * 1000:.1f}"


def render(result: Result) -> str:
    turns = result.turns
    how = "one after another" if result.concurrency == 1 else f"{result.concurrency} in flight at once"
    lines = [
        f"delivery: {len(turns)} turns ({how}), {result.warmup} warm-up turn(s) not counted; Socket Mode, SQLite, "
        "127.0.0.1",
        f"answer: {len(ANSWER):,} chars of Korean+English Markdown in {result.deltas_per_answer} deltas of "
        f"<= {TEXT_DELTA_CHARS} chars, FakeOpenAI sleeps {result.delay_s * 1000:g} ms after every SSE event",
        f"wall time {result.wall_s:.2f} s; answers complete and exact: {sum(t.complete for t in turns)}/{len(turns)}; "
        f"responses per turn: {dict(Counter(t.responses for t in turns))}; first text via "
        f"{dict(Counter(t.first_visible_method or '-' for t in turns))}; end call "
        f"{dict(Counter(t.end_method or '-' for t in turns))}",
        "",
    ]
    rows: list[tuple[str, Callable[[Turn], float]]] = [
        ("(a) first delta written -> first text in Slack", lambda t: t.first_visible_at - t.first_delta_at),
        ("(c) user post -> chat.stopStream arrives", lambda t: t.end_at - t.posted_at),
        ("-- where (a) goes", lambda t: math.nan),
        ("first delta written -> bot's first ThreadReply.write", lambda t: t.bot_first_write_at - t.first_delta_at),
        ("bot's first write -> chat.startStream arrives", lambda t: t.first_visible_at - t.bot_first_write_at),
        (
            "setStatus before text: answered - first delta written",
            lambda t: t.status_before_text_answered_at - t.first_delta_at,
        ),
        (
            "setStatus before text: server time (arrive->answer)",
            lambda t: t.status_before_text_answered_at - t.status_before_text_arrived_at,
        ),
        ("chat.startStream server time (arrive->answer)", lambda t: t.first_visible_answered_at - t.first_visible_at),
        ("-- where (c) goes", lambda t: math.nan),
        ("user post -> first delta written", lambda t: t.first_delta_at - t.posted_at),
        ("first delta -> last delta written (model pacing)", lambda t: t.last_delta_at - t.first_delta_at),
        ("last delta -> terminal event written", lambda t: t.done_at - t.last_delta_at),
        ("terminal event written -> chat.stopStream arrives", lambda t: t.end_at - t.done_at),
    ]
    width = max(len(label) for label, _ in rows) + 2
    lines.append(f"{'ms':<{width}}{'p50':>9}{'p99':>9}{'max':>9}{'min':>9}")
    for label, get in rows:
        if label.startswith("--"):
            lines.append(label)
            continue
        values = [get(t) for t in turns]
        cells = [percentile(values, p) for p in (50, 99, 100, 0)]
        lines.append(f"{label:<{width}}" + "".join(f"{_ms(v):>9}" for v in cells))
    waited = [t for t in turns if t.status_before_text_answered_at > t.first_delta_at]
    lines.append(
        f"turns whose first delta was written before the bot's pre-text setStatus was answered: "
        f"{len(waited)}/{len(turns)}"
    )
    lines += ["", f"{'Slack Web API calls per turn':<{width}}{'mean':>9}{'max':>9}{'total':>9}"]
    totals = [sum(t.calls.values()) for t in turns]
    for label, matches in METHOD_ROWS:
        counts = [sum(n for m, n in t.calls.items() if matches(m)) for t in turns]
        lines.append(f"{label:<{width}}{sum(counts) / len(counts):>9.2f}{max(counts):>9}{sum(counts):>9}")
    known = {m for t in turns for m in t.calls if any(match(m) for _, match in METHOD_ROWS)}
    other = [sum(n for m, n in t.calls.items() if m not in known) for t in turns]
    lines.append(f"{'other':<{width}}{sum(other) / len(other):>9.2f}{max(other):>9}{sum(other):>9}")
    lines.append(f"{'all':<{width}}{sum(totals) / len(totals):>9.2f}{max(totals):>9}{sum(totals):>9}")
    connections = [len(t.peers) for t in turns]
    lines.append(
        f"{'TCP connections the calls came on':<{width}}{sum(connections) / len(connections):>9.2f}"
        f"{max(connections):>9}{sum(connections):>9}"
    )
    if result.unattributed:
        lines.append(
            "calls not tied to a thread (whole run): " + ", ".join(f"{m} {n}" for m, n in result.unattributed.items())
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=50, help="measured mentions (default 50)")
    parser.add_argument("--concurrency", type=int, default=1, help="turns in flight at once (default 1: one by one)")
    parser.add_argument("--warmup", type=int, default=1, help="turns answered first and not counted (default 1)")
    parser.add_argument("--delay", type=float, default=DELTA_DELAY_S, help="seconds after every SSE event")
    parser.add_argument("--log-level", default="WARNING", help="bot log level (default WARNING)")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.concurrency < 1 or args.warmup < 0 or args.delay < 0:
        parser.error("--turns and --concurrency must be at least 1, --warmup and --delay at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    budget_s = (args.warmup + args.turns) * RUN_TIMEOUT_PER_TURN_S + 60
    result = asyncio.run(
        asyncio.wait_for(
            run(turns=args.turns, concurrency=args.concurrency, warmup=args.warmup, delay_s=args.delay), budget_s
        )
    )
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
