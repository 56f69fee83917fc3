"""How soon a streamed answer becomes visible in Slack and how many Web API calls a turn costs, beside floors.

Run: `python -m bench.delivery [--turns 50] [--floor-turns 20] [--concurrency 1] [--warmup 1] [--delay 0.005]`.

Everything runs in this process on 127.0.0.1: the loopback FakeSlack and FakeOpenAI of `tests.fakes` and a real
bot started by `tests.conftest.run_bot` (Socket Mode, SQLite in a temporary directory). User U1 (ko-KR) posts
`--turns` distinct top-level mentions in C1. With `--concurrency 1` (the default) they are answered one after
another: the next mention is posted only when the previous turn has stopped its stream and the bot is idle.
With `--concurrency K`, K posters each do the same, so K turns are in flight at once. `--warmup` turns are
answered first and not counted (Bolt's first `auth.test`, connection pools, SQLite's first writes).

Every response is the same realistic answer without code (`ANSWER`, ~3,200 characters of Korean + English
Markdown with headings, lists, two tables and a code block, after a reasoning item as a reasoning model sends
it), which the fake streams as 20-character `output_text.delta` events with `--delay` seconds of sleep after
every SSE event (token pacing).

Floors, measured in the same run against the same fakes:

- calls: a plain bot on the SDK's defaults (`--floor-turns` turns, one after another): one
  `assistant.threads.setStatus`, then slack_sdk's `AsyncWebClient.chat_stream()` helper with its default
  buffer (256 characters) fed every delta of the same answer from the same FakeOpenAI (real `openai` client),
  and `stop(blocks=feedback)`. Also printed: the minimum the protocol allows under the rule we hold to (one
  status, the stream opened with the first delta, one append per 600 characters after it, the stop) and the
  bare minimum (status, start, stop);
- latency: the fake's own round trip of one Web API call (`chat.startStream` with a short text, 50 times on
  one kept-alive `AsyncWebClient`, each stream stopped afterwards), the same call that makes our first text
  visible.

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
Also shown: where (a) and (c) go, and how many TCP connections each turn's Web API calls arrived on (the
client's peer address per call).
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

import openai
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.reply import STREAM_FLUSH_CHARS, ThreadReply, feedback_blocks
from tests.conftest import answer_texts, run_bot
from tests.fakes.openai_fake import TEXT_DELTA_CHARS, FakeOpenAI, Script
from tests.fakes.slack import FakeSlack, RecordedCall

CHANNEL = "C1"
DELTA_DELAY_S = 0.005
TURN_TIMEOUT_S = 30.0
IDLE_WAIT_S = 15.0
RUN_TIMEOUT_PER_TURN_S = 10.0  # the whole run is bounded by warm-up + turns times this (plus a minute)
ROUND_TRIPS = 50  # the latency floor: this many single chat.startStream calls
SDK_DEFAULT_BUFFER_CHARS = 256  # slack_sdk's chat_stream(buffer_size=...) default

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

### 월별 추이 (Monthly trend)

| 월 | 매출 (백만 원) | 전월 대비 | 비고 |
|---|---:|---:|---|
| 1월 | 231.4 | - | 신년 프로모션 |
| 2월 | 219.8 | -5.0% | 설 연휴 |
| 3월 | 301.2 | +37.0% | 봄 시즌 시작, highest spring month |
| 4월 | 262.5 | -12.8% | |
| 5월 | 248.9 | -5.2% | |
| 6월 | 275.3 | +10.6% | 이상치 주문 포함 (outlier included) |
| 7월 | 218.7 | -20.6% | 여름 비수기 |
| 8월 | 213.0 | -2.6% | summer low |
| 9월 | 244.6 | +14.8% | 추석 |
| 10월 | 259.1 | +5.9% | |
| 11월 | 318.7 | +23.0% | 블랙 프라이데이 (Black Friday) |
| 12월 | 304.1 | -4.6% | 연말 |

### 해석 (Interpretation)

서울의 성장은 주로 **재구매 고객**에서 나왔습니다. 재구매 고객의 평균 주문 금액은 ₩84,200으로 신규 고객(₩61,500)보다 \
37% 높았고, repeat customers placed 2.4 orders on average over the year. 부산은 신규 고객 유입이 많았지만 \
객단가가 낮아 매출 성장률은 서울보다 낮았습니다. 대구는 오프라인 매장 리뉴얼(6월) 이후 온라인 주문이 줄어든 것으로 \
보이며, this may be a channel shift rather than lost demand.

> 참고: 6월의 이상치 한 건을 제외하면 6월 매출은 ₩227.3백만 원으로, 전월 대비 -8.7%가 됩니다. \
Excluding it, the YoY growth rate drops from 18.4% to 16.9%.

### 데이터 품질 (Data quality)

- `주문일` 열의 결측값은 **14건**(0.1%)이며 분석에서 제외했습니다 (14 rows without a date were dropped).
- `지역` 값 중 "서울시"와 "서울"이 섞여 있어 하나로 합쳤습니다; likewise "부산광역시" was merged into "부산".
- 금액 열에는 쉼표가 포함된 문자열이 37건 있어 숫자로 변환했습니다 (e.g. `"1,200,000"` → `1200000`).
- 중복 주문 번호는 없었습니다. No duplicate order ids were found, so no rows were removed for that reason.
- 환불 건(`상태 = 환불`) 212건은 매출에서 뺐습니다. Refunds are excluded from every figure above.

### 방법 (Method)

매출은 `수량 × 단가 − 할인`으로 다시 계산해 원본의 `매출` 열과 비교했고, 차이는 0.02% 이내였습니다. \
Growth rates compare the same months of 2023 and 2024; 지역 비중은 환불을 뺀 순매출 기준입니다. \
모든 금액은 부가세 포함 금액입니다 (all amounts include VAT). 시간대는 모두 한국 표준시(KST)로 맞췄고, \
the time zone of every timestamp was normalised to KST before grouping by month.

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


def _carries_text(call: RecordedCall) -> bool:
    chunks = call.params.get("chunks") or []
    return bool(
        call.params.get("markdown_text")
        or call.params.get("text")
        or any(c.get("type") == "markdown_text" and c.get("text") for c in chunks if isinstance(c, dict))
    )


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
    """FakeSlack with timestamped Web API calls and a waitable "answer stream stopped" per thread."""

    def __init__(self) -> None:
        super().__init__()
        self.timed = _TimedCalls()
        self.calls = self.timed
        self._stopped: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

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
                if call.method == STOP_STREAM and call.status == 200:
                    msg = self._find(str(call.params.get("channel")), str(call.params.get("ts")))
                    if msg is not None and msg.thread_ts is not None:
                        self._stopped[msg.thread_ts].set()

    async def wait_stopped(self, thread_ts: str, *, timeout_s: float) -> None:
        """Wait for a `chat.stopStream` in the thread: the answer is complete and visible."""
        await asyncio.wait_for(self._stopped[thread_ts].wait(), timeout_s)


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
    end_at: float = math.nan
    end_method: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    peers: set[Any] = field(default_factory=set)  # distinct client connections the turn's calls came on
    complete: bool = False  # the thread shows exactly the answer, finished
    responses: int = 0


@dataclass
class Result:
    turns: list[Turn]
    sdk_turns: list[Turn]  # the plain SDK-defaults bot (the floor for calls)
    round_trips_s: list[float]  # single chat.startStream round trips (the floor for latency)
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
    await slack.wait_stopped(root, timeout_s=TURN_TIMEOUT_S)
    return root, posted_at


async def _sdk_defaults_turns(slack: _BenchSlack, oai: _BenchOpenAI, count: int) -> list[tuple[str, float]]:
    """The floor for calls: a plain bot answering `count` questions the way the SDKs' defaults make it easy.

    Its whole answer path: one status, `chat_stream()` with the default buffer fed every delta, `stop()` with
    the feedback buttons (no durable record, no fallback, no splitting: what ours does on top is not counted).
    """
    posted = []
    web_client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    model = openai.AsyncOpenAI(api_key=oai.api_key, base_url=oai.base_url, max_retries=0)
    try:
        for number in range(count):
            posted_at = time.perf_counter()
            message = await slack.user_posts(channel=CHANNEL, text=f"{QUESTION} (SDK #{number})", deliver=False)
            root = str(message["ts"])
            await web_client.assistant_threads_setStatus(channel_id=CHANNEL, thread_ts=root, status="is thinking…")
            streamer = await web_client.chat_stream(
                channel=CHANNEL, thread_ts=root, recipient_team_id=slack.team_id, recipient_user_id="U1"
            )
            response_id = ""
            stream = await model.responses.create(
                model="gpt-test", input=QUESTION, stream=True, metadata={"slack_ts": root}
            )
            async for event in stream:
                if event.type == "response.output_text.delta":
                    await streamer.append(markdown_text=event.delta)
                elif event.type == "response.completed":
                    response_id = event.response.id
            await streamer.stop(
                blocks=feedback_blocks(response_id=response_id, good_label="Helpful", bad_label="Not helpful")
            )
            posted.append((root, posted_at))
    finally:
        await model.close()
        if web_client.session is not None:
            await web_client.session.close()
    return posted


async def _round_trips(slack: _BenchSlack, count: int) -> tuple[str, list[float]]:
    """The floor for latency: `count` single `chat.startStream` round trips on one kept-alive client."""
    web_client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    root = str((await slack.user_posts(channel=CHANNEL, text="round trips", deliver=False))["ts"])
    times = []
    try:
        await web_client.auth_test()  # open the connection first, as the bot's is open
        for _ in range(count):
            started = time.perf_counter()
            response = await web_client.chat_startStream(
                channel=CHANNEL,
                thread_ts=root,
                recipient_team_id=slack.team_id,
                recipient_user_id="U1",
                markdown_text="분석 요약",
            )
            times.append(time.perf_counter() - started)
            await web_client.chat_stopStream(channel=CHANNEL, ts=str(response["ts"]))
    finally:
        if web_client.session is not None:
            await web_client.session.close()
    return root, times


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
    groups: Sequence[list[tuple[str, float]]],
    other_roots: Sequence[str],
) -> tuple[list[list[Turn]], Counter[str]]:
    """Per-turn figures for each group of posted turns; calls of no thread at all (warm-up and floor-measuring
    threads excluded) by method."""
    roots = {root for group in groups for root, _ in group} | set(other_roots)
    reply_root = {m.ts: root for root in roots for m in slack.thread(CHANNEL, root) if m.bot}
    by_thread: dict[str, list[int]] = defaultdict(list)
    unattributed: Counter[str] = Counter()
    for index, call in enumerate(slack.timed):
        thread = _thread_of(call, roots, reply_root)
        if thread is None:
            unattributed[call.method] += 1
        else:
            by_thread[thread].append(index)
    results = []
    for group in groups:
        turns = []
        for root, posted_at in group:
            turn = Turn(root_ts=root, posted_at=posted_at)
            turn.first_delta_at = oai.first_delta_at.get(root, math.nan)
            turn.last_delta_at = oai.last_delta_at.get(root, math.nan)
            turn.done_at = oai.done_at.get(root, math.nan)
            turn.bot_first_write_at = first_writes.get(root, math.nan)
            turn.responses = oai.responses_for[root]
            last_text: int | None = None
            stop: int | None = None
            for index in by_thread[root]:
                call = slack.timed[index]
                turn.calls[call.method] += 1
                turn.peers.add(slack.timed.peers[index])
                if call.method in TEXT_OPENERS and _carries_text(call) and math.isnan(turn.first_visible_at):
                    turn.first_visible_at = slack.timed.arrived[index]
                    turn.first_visible_answered_at = slack.timed.answered[index]
                    turn.first_visible_method = call.method
                if call.method == STOP_STREAM:
                    stop = index
                if call.method in (POST_MESSAGE, UPDATE, "chat.appendStream", START_STREAM):
                    last_text = index
            end = stop if stop is not None else last_text
            if end is not None:
                turn.end_at = slack.timed.arrived[end]
                turn.end_method = slack.timed[end].method
            texts = answer_texts(slack, CHANNEL, root)
            turn.complete = "\n".join(texts).strip() == ANSWER.strip()
            turns.append(turn)
        results.append(turns)
    return results, unattributed


async def run(*, turns: int, floor_turns: int, concurrency: int, warmup: int, delay_s: float) -> Result:
    """Start the fakes and a bot, answer `warmup` then `turns` mentions and measure the latter; then the floors."""
    first_writes: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        slack = await stack.enter_async_context(_BenchSlack())
        oai = await stack.enter_async_context(_BenchOpenAI())
        oai.default_script = lambda body: Script(text=ANSWER, reasoning=True, delay_s=delay_s)
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

        sdk_posted = await _sdk_defaults_turns(slack, oai, floor_turns)
        floor_root, round_trips = await _round_trips(slack, ROUND_TRIPS)
        (measured, sdk_measured), unattributed = _collect(
            slack, oai, first_writes, [posted, sdk_posted], [*warmup_roots, floor_root]
        )
    return Result(
        turns=measured,
        sdk_turns=sdk_measured,
        round_trips_s=round_trips,
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


def protocol_minimum() -> dict[str, int]:
    """Calls a 1-status answer needs under our rule: the first delta opens the stream, one append per
    `STREAM_FLUSH_CHARS` after it, the rest on the stop."""
    after_first = len(ANSWER) - min(TEXT_DELTA_CHARS, len(ANSWER))
    return {SET_STATUS: 1, START_STREAM: 1, "chat.appendStream": after_first // STREAM_FLUSH_CHARS, STOP_STREAM: 1}


def _mean_calls(turns: Sequence[Turn], matches: Callable[[str], bool]) -> float:
    return sum(sum(n for m, n in t.calls.items() if matches(m)) for t in turns) / max(1, len(turns))


def render(result: Result) -> str:
    turns, sdk = result.turns, result.sdk_turns
    how = "one after another" if result.concurrency == 1 else f"{result.concurrency} in flight at once"
    lines = [
        f"delivery: {len(turns)} turns ({how}), {result.warmup} warm-up turn(s) not counted; Socket Mode, SQLite, "
        "127.0.0.1",
        f"answer: {len(ANSWER):,} chars of Korean+English Markdown (no code, after a reasoning item) in "
        f"{result.deltas_per_answer} deltas of <= {TEXT_DELTA_CHARS} chars, FakeOpenAI sleeps "
        f"{result.delay_s * 1000:g} ms after every SSE event",
        f"wall time {result.wall_s:.2f} s; answers complete and exact: {sum(t.complete for t in turns)}/{len(turns)} "
        f"(SDK-defaults bot {sum(t.complete for t in sdk)}/{len(sdk)}); responses per turn: "
        f"{dict(Counter(t.responses for t in turns))}; first text via "
        f"{dict(Counter(t.first_visible_method or '-' for t in turns))}; end call "
        f"{dict(Counter(t.end_method or '-' for t in turns))}",
        "",
    ]
    first_visible = [t.first_visible_at - t.first_delta_at for t in turns]
    sdk_first_visible = [t.first_visible_at - t.first_delta_at for t in sdk]
    width = 56
    lines.append(f"{'first model token -> first text visible, ms':<{width}}{'p50':>9}{'p99':>9}{'max':>9}{'min':>9}")
    for label, values in (
        ("ours", first_visible),
        (f"floor: one chat.startStream round trip (x{len(result.round_trips_s)})", result.round_trips_s),
        (f"SDK-defaults bot (chat_stream, buffer {SDK_DEFAULT_BUFFER_CHARS})", sdk_first_visible),
    ):
        cells = [percentile(values, p) for p in (50, 99, 100, 0)]
        lines.append(f"{label:<{width}}" + "".join(f"{_ms(v):>9}" for v in cells))
    floor_p50, floor_p99 = percentile(result.round_trips_s, 50), percentile(result.round_trips_s, 99)
    lines.append(
        f"{'ratio ours / floor':<{width}}{percentile(first_visible, 50) / floor_p50:>8.1f}x"
        f"{percentile(first_visible, 99) / floor_p99:>8.1f}x"
    )

    minimum = protocol_minimum()
    lines += [
        "",
        f"{'Slack Web API calls per turn':<{width}}{'ours':>9}{'max':>6}{'SDK bot':>9}{'600-rule':>9}{'bare':>6}",
    ]
    bare = {SET_STATUS: 1, START_STREAM: 1, STOP_STREAM: 1}
    for label, matches in METHOD_ROWS:
        ours_max = max(sum(n for m, n in t.calls.items() if matches(m)) for t in turns)
        rule = sum(n for m, n in minimum.items() if matches(m))
        bare_n = sum(n for m, n in bare.items() if matches(m))
        lines.append(
            f"{label:<{width}}{_mean_calls(turns, matches):>9.2f}{ours_max:>6}{_mean_calls(sdk, matches):>9.2f}"
            f"{rule:>9}{bare_n:>6}"
        )
    known = {m for t in [*turns, *sdk] for m in t.calls if any(match(m) for _, match in METHOD_ROWS)}
    other = lambda m: m not in known  # noqa: E731
    lines.append(
        f"{'other':<{width}}{_mean_calls(turns, other):>9.2f}"
        f"{max(sum(n for m, n in t.calls.items() if other(m)) for t in turns):>6}{_mean_calls(sdk, other):>9.2f}"
        f"{0:>9}{0:>6}"
    )
    every = lambda m: True  # noqa: E731
    ours_all, sdk_all = _mean_calls(turns, every), _mean_calls(sdk, every)
    lines.append(
        f"{'all':<{width}}{ours_all:>9.2f}{max(sum(t.calls.values()) for t in turns):>6}{sdk_all:>9.2f}"
        f"{sum(minimum.values()):>9}{sum(bare.values()):>6}"
    )
    lines.append(
        f"ratio ours / SDK-defaults bot {ours_all / sdk_all:.2f}x; ours / 600-rule minimum "
        f"{ours_all / sum(minimum.values()):.2f}x; text writes after the first: one per "
        f"{(len(ANSWER) - TEXT_DELTA_CHARS) / max(1e-9, _mean_calls(turns, lambda m: m == 'chat.appendStream')):.0f}"
        " chars (rule: >= 600)"
    )
    connections = [len(t.peers) for t in turns]
    lines.append(f"TCP connections the calls came on: mean {sum(connections) / len(connections):.2f}")

    rows: list[tuple[str, Callable[[Turn], float]]] = [
        ("(c) user post -> chat.stopStream arrives", lambda t: t.end_at - t.posted_at),
        ("-- where the first text's time goes", lambda t: math.nan),
        ("first delta written -> bot's first ThreadReply.write", lambda t: t.bot_first_write_at - t.first_delta_at),
        ("bot's first write -> chat.startStream arrives", lambda t: t.first_visible_at - t.bot_first_write_at),
        ("chat.startStream server time (arrive->answer)", lambda t: t.first_visible_answered_at - t.first_visible_at),
        ("-- where (c) goes", lambda t: math.nan),
        ("user post -> first delta written", lambda t: t.first_delta_at - t.posted_at),
        ("first delta -> last delta written (model pacing)", lambda t: t.last_delta_at - t.first_delta_at),
        ("last delta -> terminal event written", lambda t: t.done_at - t.last_delta_at),
        ("terminal event written -> chat.stopStream arrives", lambda t: t.end_at - t.done_at),
    ]
    lines += ["", f"{'ms':<{width}}{'p50':>9}{'p99':>9}{'max':>9}{'min':>9}"]
    for label, get in rows:
        if label.startswith("--"):
            lines.append(label)
            continue
        values = [get(t) for t in turns]
        cells = [percentile(values, p) for p in (50, 99, 100, 0)]
        lines.append(f"{label:<{width}}" + "".join(f"{_ms(v):>9}" for v in cells))
    if result.unattributed:
        lines.append(
            "calls not tied to a thread (whole run): " + ", ".join(f"{m} {n}" for m, n in result.unattributed.items())
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=50, help="measured mentions (default 50)")
    parser.add_argument(
        "--floor-turns", type=int, default=20, help="answers of the SDK-defaults bot, the floor for calls (default 20)"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="turns in flight at once (default 1: one by one)")
    parser.add_argument("--warmup", type=int, default=1, help="turns answered first and not counted (default 1)")
    parser.add_argument("--delay", type=float, default=DELTA_DELAY_S, help="seconds after every SSE event")
    parser.add_argument("--log-level", default="WARNING", help="bot log level (default WARNING)")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.floor_turns < 1 or args.concurrency < 1 or args.warmup < 0 or args.delay < 0:
        parser.error("--turns, --floor-turns and --concurrency must be at least 1, --warmup and --delay at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    budget_s = (args.warmup + args.turns + args.floor_turns) * RUN_TIMEOUT_PER_TURN_S + 60
    result = asyncio.run(
        asyncio.wait_for(
            run(
                turns=args.turns,
                floor_turns=args.floor_turns,
                concurrency=args.concurrency,
                warmup=args.warmup,
                delay_s=args.delay,
            ),
            budget_s,
        )
    )
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
