"""Operating endpoints: /healthz, /readyz, /metrics in HTTP mode (on PORT) and Socket Mode (on HEALTH_PORT)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import answer_texts, free_port, run_bot
from tests.fakes.openai_fake import FakeOpenAI, Script
from tests.fakes.slack import FakeSlack
from tests.fakes.tcp_proxy import TcpProxy

CSV = b"id,rating\n1,5\n2,1\n"
METRIC_FAMILIES = {
    "slack_analyst_turns": ("counter", {"outcome"}),
    "slack_analyst_turn_duration_seconds": ("histogram", set()),
    "slack_analyst_first_text_seconds": ("histogram", set()),
    "slack_analyst_ack_seconds": ("histogram", set()),
    "slack_analyst_turns_in_progress": ("gauge", set()),
    "slack_analyst_turns_waiting": ("gauge", set()),
    "slack_analyst_openai_tokens": ("counter", {"kind"}),
    "slack_analyst_files": ("counter", {"result"}),
    "slack_analyst_slack_api_errors": ("counter", {"method", "error"}),
    "slack_analyst_openai_errors": ("counter", {"code"}),
}


async def get(port: int, path: str) -> tuple[int, str, str]:
    """Status, body and content type of `GET http://127.0.0.1:port/path`."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text(), resp.headers.get("Content-Type", "")


async def scrape(port: int) -> dict[str, float]:
    """`/metrics` parsed with prometheus_client's parser: {'name{label="v",…}': value}."""
    status, text, content_type = await get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    values: dict[str, float] = {}
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in METRIC_FAMILIES.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name].type == kind
        for sample in families[name].samples:
            if labels and sample.name.endswith("_total"):
                assert set(sample.labels) == labels
    for family in families.values():
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def test_http_mode_serves_health_readiness_and_metrics_that_move_after_a_turn(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    port = free_port()
    async with run_bot(slack, oai, sqlite_url, mode="http", port=port) as running:
        assert (await get(port, "/healthz"))[0] == 200
        status, body, _ = await get(port, "/readyz")
        assert status == 200 and json.loads(body) == {"ok": True}
        before = await scrape(port)
        assert before.get('slack_analyst_turns_total{outcome="completed"}', 0) == 0

        slack.fail_next("assistant.threads.setStatus", error="missing_scope")
        csv = slack.add_file(name="sales.csv", content=CSV)
        pdf = slack.add_file(name="report.pdf", content=b"%PDF-1.4 not data")
        message = await slack.user_posts(channel="C1", text="<@UBOT> how many rows?", files=[csv, pdf])
        await slack.wait_for(lambda: any(t.startswith("Echo:") for t in answer_texts(slack, "C1", message["ts"])))
        await slack.wait_delivered()
        assert await running.bot.scheduler.wait_idle(timeout=10)
        after = await scrape(port)
    assert after['slack_analyst_turns_total{outcome="completed"}'] == 1
    assert after["slack_analyst_turn_duration_seconds_count"] == 1
    assert after["slack_analyst_first_text_seconds_count"] == 1
    assert after["slack_analyst_ack_seconds_count"] >= 1
    assert after['slack_analyst_openai_tokens_total{kind="input"}'] > 0
    assert after['slack_analyst_openai_tokens_total{kind="output"}'] > 0
    assert after['slack_analyst_files_total{result="taken"}'] == 1
    assert after['slack_analyst_files_total{result="refused_unsupported"}'] == 1
    assert (
        after['slack_analyst_slack_api_errors_total{error="missing_scope",method="assistant.threads.setStatus"}'] == 1
    )
    assert after["slack_analyst_turns_in_progress"] == 0
    assert after["slack_analyst_turns_waiting"] == 0


async def test_socket_mode_health_port_readiness_gauges_and_shutdown(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    health_port = free_port()
    hold = asyncio.Event()
    oai.fail_next("/v1/responses", status=400, code="invalid_prompt", message="no", method="POST")
    oai.scripts.append(Script(text="a long analysis begins here " * 3, hold=hold))
    env = {"HEALTH_PORT": str(health_port), "MAX_CONCURRENT_TURNS": "1"}
    async with run_bot(slack, oai, sqlite_url, env=env) as running:
        assert (await get(health_port, "/healthz"))[0] == 200
        assert (await get(health_port, "/readyz"))[0] == 200

        failed = await slack.user_posts(channel="C1", text="<@UBOT> first question")
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", failed["ts"])) == 1)
        assert await running.bot.scheduler.wait_idle(timeout=10)
        metrics = await scrape(health_port)
        assert metrics['slack_analyst_openai_errors_total{code="invalid_prompt"}'] == 1
        assert metrics['slack_analyst_turns_total{outcome="OpenAIRejected"}'] == 1

        held = await slack.user_posts(channel="C1", text="<@UBOT> a long one")
        await oai.wait_for(lambda: oai.active_streams == 1)
        await slack.user_posts(channel="C1", text="<@UBOT> another thread")
        await slack.wait_delivered()
        metrics = await scrape(health_port)
        assert metrics["slack_analyst_turns_in_progress"] == 1
        assert metrics["slack_analyst_turns_waiting"] == 1

        running.stop_event.set()  # shutdown begins; the held turn keeps the process in its grace period
        status, body, _ = await get(health_port, "/readyz")
        assert status == 503 and json.loads(body)["down"] == {"process": "stopping"}
        assert (await get(health_port, "/healthz"))[0] == 200
        hold.set()
        await running.stop()
    assert any(t for t in answer_texts(slack, "C1", held["ts"]))


async def test_socket_mode_without_health_port_listens_nowhere(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str
) -> None:
    port = free_port()
    async with run_bot(slack, oai, sqlite_url, env={"PORT": str(port)}) as running:
        assert running.bot.settings.health_port is None
        try:
            await get(port, "/healthz")
        except aiohttp.ClientConnectorError:
            pass
        else:
            raise AssertionError("Socket Mode without HEALTH_PORT must not listen on PORT")


async def wait_ready(port: int, *, ready: bool, timeout_s: float = 15.0) -> dict[str, Any]:
    """Poll `/readyz` until it answers 200 (`ready`) or 503; returns the body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        status, body, _ = await get(port, "/readyz")
        if status == (200 if ready else 503):
            return dict(json.loads(body))
        if loop.time() > deadline:
            raise AssertionError(f"/readyz stayed {status}: {body}")
        await asyncio.sleep(0.05)


async def test_database_away_for_a_few_seconds_loses_no_message(oai: FakeOpenAI, postgres_url: str) -> None:
    """While the database refuses connections /readyz is 503, the message is not acknowledged (so Slack
    delivers it again), the process keeps running, and once the database is back it is answered once."""
    health_port = free_port()
    host_port = postgres_url.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    async with FakeSlack(ack_timeout_s=1.0) as slack, TcpProxy(host, int(port or 5432)) as proxy:
        url = postgres_url.replace(f"@{host_port}/", f"@127.0.0.1:{proxy.port}/")
        async with run_bot(slack, oai, url, env={"HEALTH_PORT": str(health_port)}) as running:
            await wait_ready(health_port, ready=True)
            await proxy.down()
            body = await wait_ready(health_port, ready=False)
            assert set(body["down"]) == {"database"}

            message = await slack.user_posts(channel="C1", text="<@UBOT> are you still there?")

            def deliveries() -> list[dict[str, Any]]:
                return [e for e in slack.envelopes if e["payload"].get("event", {}).get("ts") == message["ts"]]

            await slack.wait_for(lambda: any(e["retry_attempt"] >= 1 for e in deliveries()), timeout=10)
            first = [e for e in deliveries() if e["retry_attempt"] == 0]
            assert first and not any(e["envelope_id"] in slack.acks for e in first)
            assert not running.task.done()

            await proxy.up()
            await wait_ready(health_port, ready=True)
            await slack.wait_for(lambda: bool(answer_texts(slack, "C1", message["ts"])), timeout=20)
            await slack.wait_delivered()
            assert await running.bot.scheduler.wait_idle(timeout=10)
            assert any(e["envelope_id"] in slack.acks for e in deliveries())
        assert len(answer_texts(slack, "C1", message["ts"])) == 1
    assert len(oai.requests_to("POST", "/v1/responses")) == 1


async def test_http_mode_answers_5xx_while_the_database_is_away_and_the_retry_is_answered(
    oai: FakeOpenAI, postgres_url: str
) -> None:
    port = free_port()
    host_port = postgres_url.split("@", 1)[1].split("/", 1)[0]
    host, _, pg_port = host_port.partition(":")
    async with FakeSlack() as slack, TcpProxy(host, int(pg_port or 5432)) as proxy:
        slack.retry_delays_s = (1.0, 1.0, 1.0)
        url = postgres_url.replace(f"@{host_port}/", f"@127.0.0.1:{proxy.port}/")
        async with run_bot(slack, oai, url, mode="http", port=port) as running:
            await proxy.down()
            body = await wait_ready(port, ready=False)
            assert set(body["down"]) == {"database"}
            message = await slack.user_posts(channel="C1", text="<@UBOT> are you still there?")
            await slack.wait_for(lambda: any(status >= 500 for status, _ in slack.http_deliveries), timeout=10)
            assert not running.task.done()
            await proxy.up()
            await wait_ready(port, ready=True)
            await slack.wait_for(lambda: bool(answer_texts(slack, "C1", message["ts"])), timeout=20)
            await slack.wait_delivered()
            assert await running.bot.scheduler.wait_idle(timeout=10)
        assert len(answer_texts(slack, "C1", message["ts"])) == 1
    assert len(oai.requests_to("POST", "/v1/responses")) == 1
