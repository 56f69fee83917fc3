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

import aiohttp

from tests.conftest import answer_texts, wait_http_ready
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

CHANNEL = "C1"
ACK_BUDGET_S = 3.0  # Slack's
ACK_POLL_S = 0.02
ANSWER_POLL_S = 0.25  # counting answers scans every thread; poll gently
WARM_UP_TIMEOUT_S = 30.0
_QUESTION = re.compile(r"question (\d+)\b")

log = logging.getLogger("bench.ack_fakes")


class _BenchSlack(FakeSlack):
    """FakeSlack that remembers which event each HTTP delivery carried (`http_deliveries` does not say), and
    whose delivery client opens as many connections as there are deliveries: aiohttp's default of 100 per
    session would queue the rest inside the fake, and that wait would be counted as the bot's."""

    def __init__(self) -> None:
        super().__init__()
        self.http_by_event: dict[str, list[tuple[int, float]]] = defaultdict(list)

    async def start(self) -> None:
        await super().start()
        if self._session is not None:
            await self._session.close()
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def _post_event(self, url: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bool]:
        start = time.perf_counter()
        status, no_retry = await super()._post_event(url, raw, headers)
        self.http_by_event[json.loads(raw)["event_id"]].append((status, time.perf_counter() - start))
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

    Call order: `start`, `info`, `connect`, [`warm_up`], `fire`, `wait_acked`, `wait_answered`, `count`, `close`.
    """

    def __init__(self) -> None:
        self.slack = _BenchSlack()
        self.oai = FakeOpenAI()
        self.mode = "socket"
        self.roots: dict[int, str] = {}  # question number -> root ts
        self.burst_ids: set[str] = set()
        self._fired_at = 0.0
        self._auth_tests_before = 0

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
        loop = asyncio.get_running_loop()
        self._fired_at = loop.time()
        await asyncio.gather(*(self.slack.deliver(env) for env in bodies))
        burst_s = loop.time() - self._fired_at
        return {"burst_s": burst_s, "root_ts": sorted(root_ts), "event_ids": sorted(self.burst_ids)}

    async def wait_acked(self, timeout_s: float) -> dict[str, Any]:
        ok = await poll(self._all_acked, timeout_s=timeout_s, interval_s=ACK_POLL_S)
        return {"ok": ok, "after_s": asyncio.get_running_loop().time() - self._fired_at}

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


CALLS = ("info", "connect", "warm_up", "fire", "wait_acked", "wait_answered", "count")


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
