"""The Slack and OpenAI side of `bench.ack_latency`: loopback fakes, the burst of mentions, and the counting.

Used in-process (`FakesSide` called directly) or as a child process (`python -m bench.ack_fakes`), so that the
fakes' own CPU work does not run on the bot's event loop. The child speaks JSON lines: it answers each
`{"call": name, "args": {...}}` read from stdin with `{"ok": result}` or `{"error": text}`, until `close` or
end of input. Only protocol lines go to stdout; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import answer_texts, wait_http_ready
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack

CHANNEL = "C1"
ACK_BUDGET_S = 3.0  # Slack's
ACK_POLL_S = 0.02
ANSWER_POLL_S = 0.25  # counting answers scans every thread; poll gently
WARM_UP_TIMEOUT_S = 30.0
LOAD_START_TIMEOUT_S = 30.0
# The answers already being written when the burst arrives: each this long, streamed in the fake's
# 20-character deltas with this pause after every event (~6 s per answer), so they last through the burst.
LOAD_ANSWER_CHARS = 3_200
LOAD_DELTA_DELAY_S = 0.03
_QUESTION = re.compile(r"question (\d+)\b")
_EARLIER = "earlier question"

log = logging.getLogger("bench.ack_fakes")


class _KeptConnections:
    """HTTP/1.1 POSTs over kept-alive loopback connections, opened before they are timed.

    Slack's deliveries come from Slack's machines (or a load balancer's kept-alive upstream connections), so
    its client's work is not the bot's. aiohttp's client, on the fakes' one event loop, spends about half a
    millisecond of CPU per request before it writes a byte: with 400 requests started together the last one
    waited ~250 ms for the client itself, and that wait was counted as the server's. Here a request is one
    prebuilt write on an open connection, and the response is read by hand (status line, headers,
    Content-Length or chunked body).
    """

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = defaultdict(list)

    async def warm(self, url: str, count: int) -> None:
        """Have `count` connections to `url`'s server open and idle, each proven by one `GET /healthz`."""
        host, port, _ = _split(url)
        missing = count - len(self._idle[(host, port)])
        batch = 50  # the listener's accept backlog is 128: do not overflow it
        for start in range(0, max(0, missing), batch):
            opened = await asyncio.gather(
                *(asyncio.open_connection(host, port) for _ in range(min(batch, missing - start)))
            )
            for _reader, writer in opened:
                writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            for reader, writer in opened:
                await _read_response(reader)
                self._idle[(host, port)].append((reader, writer))

    async def post(self, url: str, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """POST `raw` to `url`; (status, response headers with lower-case names)."""
        host, port, path = _split(url)
        idle = self._idle[(host, port)]
        reader, writer = idle.pop() if idle else await asyncio.open_connection(host, port)
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(raw)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
        try:
            status, response_headers = await _read_response(reader)
        except BaseException:
            writer.close()
            raise
        if response_headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            idle.append((reader, writer))
        return status, response_headers

    def close(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
        self._idle.clear()


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read one HTTP/1.1 response; (status, headers). Raises ConnectionError when the server closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ConnectionError("connection closed") from exc
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)
    }
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers


class _BenchSlack(FakeSlack):
    """FakeSlack that remembers which event each HTTP delivery carried (`http_deliveries` does not say), and
    that delivers over connections opened before the burst (`_KeptConnections`), so that the time measured is
    the server's."""

    def __init__(self) -> None:
        super().__init__()
        self.http_by_event: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.connections = _KeptConnections()

    async def close(self) -> None:
        self.connections.close()
        await super().close()

    async def _post_event(self, url: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bool]:
        start = time.perf_counter()
        try:
            status, response_headers = await self.connections.post(url, raw, headers)
            no_retry = response_headers.get("x-slack-no-retry") == "1"
        except (ConnectionError, OSError, ValueError):
            status, no_retry = 0, False
        latency = time.perf_counter() - start
        self.http_deliveries.append((status, latency))
        self.http_by_event[json.loads(raw)["event_id"]].append((status, latency))
        return status, no_retry


async def poll(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float) -> bool:
    """Wait until `predicate()` holds; False after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval_s)
    return True


class FakesSide:
    """FakeSlack + FakeOpenAI (default script: an immediate echo) and the burst run against them.

    Call order: `start`, `info`, `connect`, [`warm_up`], [`load`], `fire`, `wait_acked`, `wait_answered`, `count`,
    `close`.
    """

    def __init__(self) -> None:
        self.slack = _BenchSlack()
        self.oai = FakeOpenAI()
        self.mode = "socket"
        self.roots: dict[int, str] = {}  # question number -> root ts
        self.burst_ids: set[str] = set()
        self._fired_at = 0.0
        self._auth_tests_before = 0
        self.load_roots: list[str] = []
        echo = self.oai.default_script
        long_answer = _long_answer(LOAD_ANSWER_CHARS)

        def script(body: dict[str, Any]) -> Script:
            if _EARLIER in json.dumps(body.get("input")):
                return Script(text=long_answer, delay_s=LOAD_DELTA_DELAY_S)
            return echo(body)

        self.oai.default_script = script

    async def start(self) -> None:
        await self.slack.start()
        await self.oai.start()

    async def close(self) -> None:
        await self.slack.close()
        await self.oai.close()

    def info(self) -> dict[str, str]:
        """What the bot needs to reach the fakes (the fields `tests.conftest.bot_env` reads)."""
        s = self.slack
        return {
            "bot_token": s.bot_token,
            "app_token": s.app_token,
            "api_url": s.api_url,
            "signing_secret": s.signing_secret,
            "bot_user_id": s.bot_user_id,
            "openai_base_url": self.oai.base_url,
            "openai_api_key": self.oai.api_key,
        }

    async def connect(self, mode: str, port: int = 0) -> None:
        """Wait for the bot's Socket Mode connection, or its HTTP endpoint on `port`, and aim deliveries there."""
        self.mode = mode
        if mode == "socket":
            await self.slack.wait_socket_connected()
        else:
            await wait_http_ready(port)
            self.slack.http_events_url = f"http://127.0.0.1:{port}/slack/events"

    async def warm_up(self) -> bool:
        """One mention, answered, before the burst; True if it was answered in time."""
        first = await self.slack.user_posts(channel=CHANNEL, text=f"<@{self.slack.bot_user_id}> warm-up")
        ts = str(first["ts"])
        return await poll(
            lambda: bool(answer_texts(self.slack, CHANNEL, ts)), timeout_s=WARM_UP_TIMEOUT_S, interval_s=0.05
        )

    async def load(self, streams: int) -> dict[str, Any]:
        """Mention the bot `streams` times (in their own threads) with questions whose answers stream for
        several seconds, and return once all of them are streaming: the burst then meets a bot at work.

        Returns how many were streaming and how long it took.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        text = f"<@{self.slack.bot_user_id}> {_EARLIER} {{}}"
        for i in range(streams):
            posted = await self.slack.user_posts(channel=CHANNEL, text=text.format(i))
            self.load_roots.append(str(posted["ts"]))
        ok = await poll(
            lambda: self.oai.active_streams >= streams and self._load_visible() >= streams,
            timeout_s=LOAD_START_TIMEOUT_S,
            interval_s=0.02,
        )
        return {"ok": ok, "streaming": self.oai.active_streams, "after_s": loop.time() - started}

    def _load_visible(self) -> int:
        """Earlier questions whose answer has begun to show in Slack."""
        return sum(1 for ts in self.load_roots if any(m.bot and m.text for m in self.slack.thread(CHANNEL, ts)))

    async def fire(self, events: int) -> dict[str, Any]:
        """Post `events` mentions (each: app_mention + message), then deliver all their events at once.

        The messages and event bodies are built first, untimed, so that the fake's own bookkeeping does not
        hold up the acks it is timing; then every delivery starts together. Returns roots and event ids.
        """
        text = f"<@{self.slack.bot_user_id}> question {{}}"
        posted = [
            await self.slack.user_posts(channel=CHANNEL, text=text.format(i), deliver=False) for i in range(events)
        ]
        self.roots = {i: str(message["ts"]) for i, message in enumerate(posted)}
        root_ts = set(self.roots.values())
        bodies = [
            env
            for env in self.slack.events
            if env["event"].get("ts") in root_ts and env["event"].get("user") != self.slack.bot_user_id
        ]
        self.burst_ids = {env["event_id"] for env in bodies}
        self._auth_tests_before = len(self.slack.calls_to("auth.test"))
        if self.mode == "http":
            await self.slack.connections.warm(str(self.slack.http_events_url), len(bodies))
        loop = asyncio.get_running_loop()
        self._fired_at = loop.time()
        await asyncio.gather(*(self.slack.deliver(env) for env in bodies))
        burst_s = loop.time() - self._fired_at
        return {"burst_s": burst_s, "root_ts": sorted(root_ts), "event_ids": sorted(self.burst_ids)}

    async def wait_acked(self, timeout_s: float) -> dict[str, Any]:
        ok = await poll(self._all_acked, timeout_s=timeout_s, interval_s=ACK_POLL_S)
        # Answers still streaming from OpenAI when the last ack arrived: the burst met a bot at work.
        streaming = self.oai.active_streams
        return {"ok": ok, "after_s": asyncio.get_running_loop().time() - self._fired_at, "streaming": streaming}

    async def wait_answered(self, timeout_s: float) -> dict[str, Any]:
        ok = await poll(lambda: all(self._answers().values()), timeout_s=timeout_s, interval_s=ANSWER_POLL_S)
        return {"ok": ok, "after_s": asyncio.get_running_loop().time() - self._fired_at}

    def count(self) -> dict[str, Any]:
        """Deliveries and ack latencies of the burst, and answers per thread in Slack and in OpenAI."""
        deliveries = self._deliveries()
        answers = self._answers()
        responses, conversations = self._responses()
        outcome: Counter[str] = Counter()
        for number in self.roots:
            a, r = answers[number], responses[number]
            outcome["missing" if a == 0 else "exactly_once" if a == 1 and r == 1 else "duplicated"] += 1
        return {
            "deliveries": len(deliveries),
            "acks": sum(1 for ok, _, _ in deliveries if ok),
            "retries": sum(1 for _, _, attempt in deliveries if attempt > 0),
            "latencies_s": [latency for ok, latency, _ in deliveries if ok and latency is not None],
            "exactly_once": outcome["exactly_once"],
            "duplicated": outcome["duplicated"],
            "missing": outcome["missing"],
            "slack_answers": dict(Counter(answers.values())),
            "openai_responses": dict(Counter(responses.values())),
            "conversations": dict(Counter(conversations.values())),
            "auth_test_calls": len(self.slack.calls_to("auth.test")) - self._auth_tests_before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    def _all_acked(self) -> bool:
        s = self.slack
        if self.mode == "socket":
            acked = {env["payload"]["event_id"] for env in s.envelopes if env["envelope_id"] in s.acks}
        else:
            acked = {eid for eid, tries in s.http_by_event.items() if any(200 <= st < 300 for st, _ in tries)}
        return self.burst_ids <= acked

    def _deliveries(self) -> list[tuple[bool, float | None, int]]:
        """(acked, latency_s or None, retry_attempt) for every delivery attempt of the burst's events."""
        s, out = self.slack, []
        if self.mode == "socket":
            for env in s.envelopes:
                if env["payload"]["event_id"] in self.burst_ids:
                    latency = s.acks.get(env["envelope_id"])
                    out.append((latency is not None, latency, int(env.get("retry_attempt") or 0)))
            return out
        for event_id in self.burst_ids:
            for attempt, (status, latency) in enumerate(s.http_by_event.get(event_id, [])):
                ok = 200 <= status < 300
                out.append((ok, latency if ok else None, attempt))
        return out

    def _answers(self) -> dict[int, int]:
        """Finished bot answers in each question's thread that answer that very question."""
        counts: dict[int, int] = {}
        for number, ts in self.roots.items():
            texts = answer_texts(self.slack, CHANNEL, ts)
            counts[number] = sum(1 for t in texts if (m := _QUESTION.search(t)) and int(m.group(1)) == number)
        return counts

    def _responses(self) -> tuple[dict[int, int], dict[int, int]]:
        """POST /v1/responses per thread (through its conversations' metadata), and conversations per thread."""
        number_of = {ts: number for number, ts in self.roots.items()}
        thread_of_conv: dict[str, int] = {}
        conversations = dict.fromkeys(self.roots, 0)
        for conv_id, record in self.oai.conversations.items():
            number = number_of.get(str((record["object"].get("metadata") or {}).get("slack_thread_ts")))
            if number is not None:
                thread_of_conv[conv_id] = number
                conversations[number] += 1
        responses = dict.fromkeys(self.roots, 0)
        for request in self.oai.requests_to("POST", "/v1/responses"):
            if request.path.rstrip("/") != "/v1/responses" or not isinstance(request.json, dict):
                continue
            conv = request.json.get("conversation")
            conv_id = str(conv.get("id") if isinstance(conv, dict) else conv)
            if conv_id in thread_of_conv:
                responses[thread_of_conv[conv_id]] += 1
        return responses, conversations


def _long_answer(chars: int) -> str:
    """About `chars` characters of an answer, in sentences."""
    sentence = "Revenue grew 12% in the north region while the south stayed flat. "
    return (sentence * (chars // len(sentence) + 1))[:chars]


CALLS = ("info", "connect", "warm_up", "load", "fire", "wait_acked", "wait_answered", "count")


async def call(side: FakesSide, name: str, args: dict[str, Any]) -> Any:
    """Run one of `CALLS` on `side`."""
    if name not in CALLS:
        raise ValueError(f"unknown call {name!r}")
    result = getattr(side, name)(**args)
    return await result if asyncio.iscoroutine(result) else result


async def serve_stdio() -> None:
    """The child process: JSON lines in on stdin, out on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    side = FakesSide()
    await side.start()
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request["call"] == "close":
                break
            try:
                reply = {"ok": await call(side, request["call"], request.get("args") or {})}
            except Exception as exc:  # report to the parent, which raises
                reply = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            print(json.dumps(reply), flush=True)
    finally:
        await side.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve_stdio())
