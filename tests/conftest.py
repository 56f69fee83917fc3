"""Shared fixtures: loopback fakes of Slack and OpenAI, databases, and a bot wired to them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.app import Bot, build_bot, serve
from bot.config import Settings
from bot.store import Store
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's real tokens."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "OPENAI_", "BOT_")) or name in {"DATABASE_URL", "PORT"}:
            monkeypatch.delenv(name)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def oai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.sqlite3'}"


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    import asyncpg

    admin_dsn = POSTGRES_ADMIN_URL
    name = f"bot_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with postgres_database() as url:
        yield url


def bot_env(slack: FakeSlack, oai: FakeOpenAI, database_url: str, *, mode: str = "socket", port: int = 0) -> dict:
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_API_KEY": oai.api_key,
        "OPENAI_BASE_URL": oai.base_url,
        "OPENAI_MODEL": "gpt-test",
        "DATABASE_URL": database_url,
    }
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = slack.app_token
    else:
        env["SLACK_SIGNING_SECRET"] = slack.signing_secret
        env["PORT"] = str(port)
    return env


@dataclass
class RunningBot:
    """A bot served in this event loop against the fakes; `stop()` shuts it down like SIGTERM."""

    bot: Bot
    stop_event: asyncio.Event
    task: asyncio.Task[None]
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 15)


@contextlib.asynccontextmanager
async def run_bot(
    slack: FakeSlack,
    oai: FakeOpenAI,
    database_url: str,
    *,
    mode: str = "socket",
    port: int = 0,
    env: dict[str, str] | None = None,
    store: Store | None = None,
) -> AsyncIterator[RunningBot]:
    """Start a bot (Socket Mode, or HTTP on `port`) and wait until it can take events.

    `env` adds or overrides configuration variables; `store` replaces the one the bot would open (e.g.
    with a clock the test moves).
    """
    settings = Settings.from_env({**bot_env(slack, oai, database_url, mode=mode, port=port), **(env or {})})
    bot = await build_bot(settings, store=store)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(bot, stop=stop, host="127.0.0.1"))
    running = RunningBot(bot=bot, stop_event=stop, task=task, port=port or None)
    try:
        if mode == "socket":
            await slack.wait_socket_connected()
        else:
            await wait_http_ready(port)
            slack.http_events_url = f"http://127.0.0.1:{port}/slack/events"
        yield running
    finally:
        if not task.done():
            await running.stop()
        elif task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def wait_http_ready(port: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            if loop.time() > deadline:
                raise AssertionError(f"bot did not become ready on port {port}")
            await asyncio.sleep(0.05)


ROOT = Path(__file__).resolve().parents[1]
# A killed process's turns are taken over when its lease runs out: keep the wait short in tests.
TEST_LEASE_S = 2


@contextlib.asynccontextmanager
async def bot_process(
    slack: FakeSlack,
    oai: FakeOpenAI,
    database_url: str,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    mode: str = "socket",
    port: int = 0,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real `python -m bot` process against the fakes (Socket Mode, or HTTP on `port` with Slack's deliveries
    aimed there), killed (SIGKILL) on exit if still running.

    Its output goes to `log_path`; `env` adds or overrides variables.
    """
    process_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **bot_env(slack, oai, database_url, mode=mode, port=port),
        "LOG_LEVEL": "INFO",
        "TURN_LEASE_S": str(TEST_LEASE_S),
        **(env or {}),
    }
    connections_before = slack.socket_connections
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=ROOT,
            env=process_env,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
    try:
        if mode == "socket":
            await slack.wait_for(lambda: slack.socket_connections > connections_before, timeout=30)
        else:
            await wait_http_ready(port, timeout=30)
            slack.http_events_url = f"http://127.0.0.1:{port}/slack/events"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_replies(slack: FakeSlack, channel: str, thread_ts: str) -> list[Any]:
    """The bot's messages in a thread, as a person sees them."""
    return [m for m in slack.thread(channel, thread_ts) if m.bot]


def answer_texts(slack: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    """Texts of the bot's finished (no longer streaming) text messages in a thread."""
    return [m.text for m in bot_replies(slack, channel, thread_ts) if m.text and not m.files and not m.streaming]


def user_uploads(oai: FakeOpenAI) -> list[Any]:
    """POST /v1/files requests for the users' files (not the deployment's chart font)."""
    from bot.turn.chart_font import FONT_FILENAME

    return [
        r
        for r in oai.requests_to("POST", "/v1/files")
        if (r.form or {}).get("file", {}).get("filename") != FONT_FILENAME
    ]


def user_file_ids(oai: FakeOpenAI, file_ids: list[str]) -> list[str]:
    """`file_ids` without the chart font's."""
    from bot.turn.chart_font import FONT_FILENAME

    return [i for i in file_ids if oai.files.get(i, {}).get("object", {}).get("filename") != FONT_FILENAME]
