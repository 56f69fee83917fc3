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
