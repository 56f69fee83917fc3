"""`python -m bot`'s exit statuses and its one-line errors, with the async run replaced by a stub."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from bot import cli
from bot.errors import ConfigError, ServiceUnreachable
from bot.terminal import run as run_command

ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "OPENAI_API_KEY": "sk-1"}


@pytest.mark.parametrize(
    ("raised", "line"),
    [
        pytest.param(None, None, id="clean-stop"),
        pytest.param(
            ConfigError("SLACK_APP_TOKEN", "was rejected by Slack (invalid_auth)"),
            "configuration error: SLACK_APP_TOKEN was rejected by Slack (invalid_auth)",
            id="rejected-token",
        ),
        pytest.param(
            ServiceUnreachable("OPENAI_BASE_URL", url="https://api.openai.com/v1", reason="timed out"),
            "start-up error: cannot reach api.openai.com (timed out): check the network connection, "
            "the proxy settings (HTTPS_PROXY) and OPENAI_BASE_URL",
            id="unreachable",
        ),
    ],
)
def test_main_exit_status_and_error_line(
    mocker: MockerFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    raised: Exception | None,
    line: str | None,
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    run = mocker.patch.object(run_command, "serve_until_signal", new=mocker.AsyncMock(side_effect=raised))
    status = cli.main(["--env-file", str(tmp_path / "none.env")])
    run.assert_awaited_once()
    err = capsys.readouterr().err
    if line is None:
        assert status == 0 and err == ""
    else:
        assert status == run_command.EXIT_CONFIG
        assert err.splitlines() == [line]


def test_starting_the_bot_loads_nothing_only_some_turns_or_setups_need() -> None:
    """What `python -m bot` imports leaves out Alembic (migrations), asyncpg and SQLAlchemy's PostgreSQL dialect,
    openpyxl (workbooks) and charset_normalizer (files that are not UTF-8): each is imported where first needed."""
    import json
    import subprocess
    import sys

    probe = "import json, sys, bot.cli, bot.app; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]
    ).stdout
    loaded = set(json.loads(out))
    unneeded = {"alembic", "mako", "asyncpg", "openpyxl", "charset_normalizer", "sqlalchemy.dialects.postgresql"}
    assert loaded & unneeded == set()
    assert {"slack_bolt", "openai", "sqlalchemy"} <= loaded  # the probe did import the bot
