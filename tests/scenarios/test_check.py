"""`python -m bot check` against the fake Slack, the fake OpenAI and a real database: one line per check."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from bot import cli
from bot.store.migrate import head_revision, upgrade
from tests.conftest import ROOT, bot_env
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack


@pytest.fixture
async def current_db(sqlite_url: str) -> str:
    await upgrade(sqlite_url)
    return sqlite_url


async def check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> tuple[int, list[str]]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status = await asyncio.to_thread(cli.main, ["check", "--env-file", ""])
    return status, capsys.readouterr().out.splitlines()


async def test_all_green_is_exit_0_as_a_real_process(slack: FakeSlack, oai: FakeOpenAI, current_db: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bot", "check", "--env-file", ""),
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **bot_env(slack, oai, current_db)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().splitlines()
    assert proc.returncode == 0, (lines, err.decode())
    assert [line[0] for line in lines] == ["✓"] * 6
    assert any("SLACK_APP_TOKEN opens a Socket Mode connection" in line for line in lines)
    assert any(f"revision {head_revision()}" in line for line in lines)


async def test_a_missing_scope_is_named_with_reinstall_the_app(
    slack: FakeSlack, oai: FakeOpenAI, current_db: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    slack.granted_scopes = tuple(s for s in slack.granted_scopes if s not in {"files:read", "im:history"})
    status, lines = await check(monkeypatch, capsys, bot_env(slack, oai, current_db))
    assert status == 1
    (failed,) = [line for line in lines if line.startswith("✗")]
    assert "files:read, im:history" in failed and "reinstall the app" in failed


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"SLACK_APP_TOKEN": "xapp-wrong"}, "SLACK_APP_TOKEN was rejected by Slack", id="bad-app-token"),
        pytest.param({"SLACK_BOT_TOKEN": "xoxb-wrong"}, "SLACK_BOT_TOKEN was rejected by Slack", id="bad-bot-token"),
        pytest.param({"OPENAI_API_KEY": "sk-wrong"}, "OPENAI_API_KEY was rejected by OpenAI", id="bad-key"),
        pytest.param({"OPENAI_MODEL": "gpt-nope"}, "OPENAI_MODEL 'gpt-nope' does not exist", id="unknown-model"),
    ],
)
async def test_a_rejected_credential_is_one_cross_with_its_fix(
    slack: FakeSlack,
    oai: FakeOpenAI,
    current_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    change: dict[str, str],
    expected: str,
) -> None:
    status, lines = await check(monkeypatch, capsys, {**bot_env(slack, oai, current_db), **change})
    assert status == 1
    failed = [line for line in lines if line.startswith("✗")]
    assert len(failed) == 1 and failed[0].startswith(f"✗ {expected}") and " — fix: " in failed[0]


async def test_a_database_behind_head_says_run_migrate(
    slack: FakeSlack, oai: FakeOpenAI, current_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with sqlite3.connect(tmp_path / "bot.sqlite3") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    status, lines = await check(monkeypatch, capsys, bot_env(slack, oai, current_db))
    assert status == 1
    assert lines[-1] == (
        f"✗ the database schema is at revision 0003, this bot needs {head_revision()} — fix: run python -m bot migrate"
    )


async def test_settings_that_do_not_parse_exit_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    status, lines = await check(monkeypatch, capsys, {"OPENAI_API_KEY": "sk-1"})
    assert status == 2
    assert lines[0].startswith("✗ settings: SLACK_BOT_TOKEN is not set")


async def test_oauth_mode_checks_no_bot_token(
    slack: FakeSlack, oai: FakeOpenAI, current_db: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    env = {
        **bot_env(slack, oai, current_db, mode="http", port=3000),
        "SLACK_BOT_TOKEN": "",
        "SLACK_CLIENT_ID": slack.client_id,
        "SLACK_CLIENT_SECRET": slack.client_secret,
    }
    status, lines = await check(monkeypatch, capsys, env)
    assert status == 0, lines
    assert any("OAuth install mode" in line for line in lines)
    assert not slack.calls_to("auth.test"), "no bot token to test: each workspace brings its own"
