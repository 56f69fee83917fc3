"""Start-up: a token, key or model that is rejected, or a Slack / OpenAI host that cannot be reached, stops
`python -m bot` with one clear line (exit 2): never a traceback, never an unclosed client."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.app import build_bot, serve
from bot.config import Settings
from bot.errors import ConfigError
from tests.conftest import bot_env, free_port
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]


async def run_bot_process(
    slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path, **overrides: str
) -> tuple[int | None, str]:
    """Run `python -m bot` with the fakes' configuration plus `overrides`; its exit status and stderr."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **bot_env(slack, oai, f"sqlite:///{tmp_path / 'bot.sqlite3'}"),
        **overrides,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--env-file",
        str(tmp_path / "none.env"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, err.decode()


def assert_clean_exit(status: int | None, text: str) -> None:
    assert status == 2, text
    assert "Traceback" not in text, text
    assert "Unclosed" not in text, "every client is closed: " + text


async def test_rejected_bot_token_exits_2_with_one_line(slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path) -> None:
    status, text = await run_bot_process(slack, oai, tmp_path, SLACK_BOT_TOKEN="xoxb-revoked-token")
    assert_clean_exit(status, text)
    error_lines = [line for line in text.splitlines() if line.startswith("configuration error")]
    assert len(error_lines) == 1
    assert "SLACK_BOT_TOKEN" in error_lines[0] and "invalid_auth" in error_lines[0]
    assert "xoxb-revoked-token" not in text, "secrets never reach the log"
    assert [c.method for c in slack.calls] == ["auth.test"]


async def test_rejected_app_token_exits_2_with_one_line(slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path) -> None:
    status, text = await run_bot_process(slack, oai, tmp_path, SLACK_APP_TOKEN="xapp-revoked-token")
    assert_clean_exit(status, text)
    error_lines = [line for line in text.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1, text
    assert error_lines[0].startswith("configuration error: SLACK_APP_TOKEN")
    assert "invalid_auth" in error_lines[0] and "App-Level Tokens" in error_lines[0]
    assert "xapp-revoked-token" not in text, "secrets never reach the log"
    assert [c.method for c in slack.calls] == ["auth.test", "apps.connections.open"], "asked once, not retried"
    assert slack.socket_connections == 0


@pytest.mark.parametrize("service", ["slack", "openai"])
@pytest.mark.parametrize("where", ["closed-port", "unresolvable-host"])
async def test_unreachable_service_exits_2_naming_the_host(
    slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path, service: str, where: str
) -> None:
    host = "127.0.0.1" if where == "closed-port" else f"{service}-fake.invalid"  # .invalid never resolves
    authority = f"127.0.0.1:{free_port()}" if where == "closed-port" else host
    variable, url = (
        ("SLACK_API_URL", f"http://{authority}/api/")
        if service == "slack"
        else ("OPENAI_BASE_URL", f"http://{authority}/v1")
    )
    status, text = await run_bot_process(slack, oai, tmp_path, **{variable: url})
    assert_clean_exit(status, text)
    naming = [line for line in text.splitlines() if host in line]
    assert len(naming) == 1, text
    assert naming[0].startswith(f"start-up error: cannot reach {host} (")
    assert variable in naming[0] and "proxy" in naming[0]
    reason = "connection refused" if where == "closed-port" else "could not be resolved"
    assert reason in naming[0]
    if service == "openai":
        assert [c.method for c in slack.calls] == ["auth.test"], "Slack was fine; OpenAI was tried next"


@pytest.mark.parametrize(
    ("change", "variable", "words"),
    [
        pytest.param({"OPENAI_API_KEY": "sk-wrong"}, "OPENAI_API_KEY", "invalid_api_key", id="rejected-key"),
        pytest.param({"OPENAI_MODEL": "gpt-9-imaginary"}, "OPENAI_MODEL", "model_not_found", id="unknown-model"),
    ],
)
async def test_openai_key_and_model_are_checked_before_connecting(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, change: dict[str, str], variable: str, words: str
) -> None:
    settings = Settings.from_env({**bot_env(slack, oai, sqlite_url), **change})
    bot = await build_bot(settings)
    with pytest.raises(ConfigError) as info:
        await serve(bot, stop=asyncio.Event(), host="127.0.0.1")
    assert info.value.variable == variable and words in str(info.value)
    assert "sk-wrong" not in str(info.value)
    assert [r.path for r in oai.requests] == [f"/v1/models/{settings.openai_model}"]
    assert not slack.calls_to("apps.connections.open"), "nothing connects before the checks pass"
    assert bot.http.closed


async def test_a_known_model_passes_the_check(slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=oai.base_url, api_key=oai.api_key, max_retries=0)
    model = await client.models.retrieve("gpt-test")
    await client.close()
    assert (model.id, model.object, model.owned_by) == ("gpt-test", "model", "system")
    assert isinstance(model.created, int)
