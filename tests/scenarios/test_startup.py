"""Start-up: a token Slack rejects stops `python -m bot` with one clear line (exit 2), never a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import bot_env
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[2]


async def test_rejected_bot_token_exits_2_with_one_line(slack: FakeSlack, oai: FakeOpenAI, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **bot_env(slack, oai, f"sqlite:///{tmp_path / 'bot.sqlite3'}"),
        "SLACK_BOT_TOKEN": "xoxb-revoked-token",
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
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    error_lines = [line for line in text.splitlines() if line.startswith("configuration error")]
    assert len(error_lines) == 1
    assert "SLACK_BOT_TOKEN" in error_lines[0] and "invalid_auth" in error_lines[0]
    assert "xoxb-revoked-token" not in text, "secrets never reach the log"
    assert [c.method for c in slack.calls] == ["auth.test"]
