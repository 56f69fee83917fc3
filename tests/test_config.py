"""Settings.from_env: defaults, validation, one clear line per problem."""

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import DEFAULT_INSTRUCTIONS, DEFAULT_MODEL, Settings
from bot.errors import ConfigError

SOCKET = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "OPENAI_API_KEY": "sk-1"}


def test_socket_mode_defaults() -> None:
    settings = Settings.from_env(SOCKET)
    assert settings.socket_mode
    assert settings.openai_model == DEFAULT_MODEL
    assert settings.database_url == "sqlite:///bot.sqlite3"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.instructions == DEFAULT_INSTRUCTIONS
    assert settings.file_size_limit_bytes == 512 * 1024 * 1024
    assert settings.health_port is None
    assert settings.log_format == "text"


def test_health_port_and_json_logs() -> None:
    settings = Settings.from_env({**SOCKET, "HEALTH_PORT": "9100", "LOG_FORMAT": "JSON"})
    assert settings.health_port == 9100
    assert settings.log_format == "json"


def test_http_mode_needs_signing_secret() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "OPENAI_API_KEY": "sk-1"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == "SLACK_SIGNING_SECRET"
    settings = Settings.from_env({**env, "SLACK_SIGNING_SECRET": "s", "PORT": "8080"})
    assert not settings.socket_mode
    assert settings.port == 8080


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        pytest.param({"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN", id="missing-bot-token"),
        pytest.param({"SLACK_BOT_TOKEN": "xoxp-user"}, "SLACK_BOT_TOKEN", id="user-token"),
        pytest.param({"SLACK_APP_TOKEN": "xoxb-wrong"}, "SLACK_APP_TOKEN", id="app-token-prefix"),
        pytest.param({"OPENAI_API_KEY": " "}, "OPENAI_API_KEY", id="blank-openai-key"),
        pytest.param({"PORT": "eighty"}, "PORT", id="port-not-a-number"),
        pytest.param({"PORT": "70000"}, "PORT", id="port-out-of-range"),
        pytest.param({"DATABASE_URL": "mysql://x"}, "DATABASE_URL", id="unsupported-database"),
        pytest.param({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL", id="api-url-without-scheme"),
        pytest.param({"FILE_SIZE_LIMIT_MB": "1024"}, "FILE_SIZE_LIMIT_MB", id="file-limit-above-openai"),
        pytest.param({"BOT_INSTRUCTIONS_FILE": "/nonexistent/x.md"}, "BOT_INSTRUCTIONS_FILE", id="missing-file"),
        pytest.param({"HEALTH_PORT": "health"}, "HEALTH_PORT", id="health-port-not-a-number"),
        pytest.param({"HEALTH_PORT": "0"}, "HEALTH_PORT", id="health-port-out-of-range"),
        pytest.param({"LOG_FORMAT": "xml"}, "LOG_FORMAT", id="unknown-log-format"),
    ],
)
def test_bad_values_name_the_variable(override: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**SOCKET, **override})
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_instructions_from_file(tmp_path: Path) -> None:
    path = tmp_path / "instructions.md"
    path.write_text("Answer in haiku.", encoding="utf-8")
    assert Settings.from_env({**SOCKET, "BOT_INSTRUCTIONS_FILE": str(path)}).instructions == "Answer in haiku."
    assert Settings.from_env({**SOCKET, "BOT_INSTRUCTIONS": "Be brief."}).instructions == "Be brief."


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "OPENAI_API_KEY", "OPENAI_MODEL", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(
        "SLACK_BOT_TOKEN=xoxb-file\nSLACK_APP_TOKEN=xapp-file\nOPENAI_API_KEY=sk-file\nOPENAI_MODEL=m1\n"
    )
    monkeypatch.setenv("OPENAI_MODEL", "m2")
    settings = Settings.from_env(dotenv_path=str(env_file))
    assert settings.slack_bot_token == "xoxb-file"
    assert settings.openai_model == "m2"


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "OPENAI_API_KEY" in lines[0]
    assert "platform.openai.com" in lines[0]


def test_governance_is_open_and_unlimited_by_default() -> None:
    settings = Settings.from_env(SOCKET)
    assert settings.access.teams == settings.access.channels == settings.access.users == frozenset()
    assert settings.access.allow_dms and settings.access.follow_ups == "anyone"
    assert settings.budgets.user_daily_usd is None and settings.budgets.team_monthly_usd is None
    assert settings.prices.input_per_mtok is None
    assert settings.retention_days == 30 and settings.retention_sweep_s == 3600


def test_governance_settings_are_parsed() -> None:
    settings = Settings.from_env(
        {
            **SOCKET,
            "ALLOWED_TEAMS": "T1, T2",
            "ALLOWED_CHANNELS": "C0123ABCD",
            "ALLOWED_USERS": "",
            "ALLOW_DMS": "false",
            "ADMIN_CONTACT": "#data-help",
            "FOLLOW_UPS": "participants",
            "OPENAI_PRICE_INPUT_PER_MTOK": "1.25",
            "OPENAI_PRICE_CONTAINER": "0.03",
            "BUDGET_USER_DAILY_USD": "2.5",
            "BUDGET_TEAM_MONTHLY_USD": "100",
            "RETENTION_DAYS": "0.5",
            "RETENTION_SWEEP_S": "60",
        }
    )
    assert settings.access.teams == {"T1", "T2"} and settings.access.channels == {"C0123ABCD"}
    assert settings.access.users == frozenset() and not settings.access.allow_dms
    assert settings.access.admin_contact == "#data-help" and settings.access.follow_ups == "participants"
    assert settings.prices.input_per_mtok == 1.25 and settings.prices.container == 0.03
    assert settings.prices.output_per_mtok is None
    assert settings.budgets.user_daily_usd == 2.5 and settings.budgets.team_monthly_usd == 100
    assert settings.budgets.channel_daily_usd is None
    assert settings.retention_days == 0.5 and settings.retention_sweep_s == 60


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        pytest.param({"ALLOWED_CHANNELS": "C1,#general"}, "ALLOWED_CHANNELS", id="channel-name-not-id"),
        pytest.param({"ALLOWED_USERS": "u123"}, "ALLOWED_USERS", id="lower-case-id"),
        pytest.param({"ALLOW_DMS": "maybe"}, "ALLOW_DMS", id="not-a-boolean"),
        pytest.param({"FOLLOW_UPS": "everyone"}, "FOLLOW_UPS", id="unknown-follow-up-mode"),
        pytest.param({"BUDGET_USER_DAILY_USD": "-1"}, "BUDGET_USER_DAILY_USD", id="negative-budget"),
        pytest.param({"BUDGET_CHANNEL_DAILY_USD": "0"}, "BUDGET_CHANNEL_DAILY_USD", id="zero-budget"),
        pytest.param({"BUDGET_TEAM_MONTHLY_USD": "ten"}, "BUDGET_TEAM_MONTHLY_USD", id="budget-not-a-number"),
        pytest.param({"OPENAI_PRICE_OUTPUT_PER_MTOK": "-0.1"}, "OPENAI_PRICE_OUTPUT_PER_MTOK", id="negative-price"),
        pytest.param({"OPENAI_PRICE_INPUT_PER_MTOK": "nan"}, "OPENAI_PRICE_INPUT_PER_MTOK", id="nan-price"),
        pytest.param({"RETENTION_DAYS": "abc"}, "RETENTION_DAYS", id="retention-not-a-number"),
        pytest.param({"RETENTION_SWEEP_S": "0"}, "RETENTION_SWEEP_S", id="sweep-interval-zero"),
    ],
)
def test_bad_governance_values_name_the_variable(override: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**SOCKET, **override})
    assert info.value.variable == variable


def test_the_database_url_alone_needs_no_slack_or_openai_settings() -> None:
    from bot.config import DEFAULT_DATABASE_URL, database_url_from_env

    assert database_url_from_env({}) == DEFAULT_DATABASE_URL
    assert database_url_from_env({"DATABASE_URL": " postgresql://bot@db/bot "}) == "postgresql://bot@db/bot"
    with pytest.raises(ConfigError) as err:
        database_url_from_env({"DATABASE_URL": "mysql://bot@db/bot"})
    assert err.value.variable == "DATABASE_URL"


OAUTH = {
    "SLACK_CLIENT_ID": "1111.2222",
    "SLACK_CLIENT_SECRET": "secret",
    "SLACK_SIGNING_SECRET": "signing",
    "OPENAI_API_KEY": "sk-1",
}


def test_oauth_mode_needs_no_bot_token_and_asks_for_the_manifest_scopes() -> None:
    from bot.config import BOT_SCOPES

    settings = Settings.from_env(OAUTH)
    assert settings.oauth is not None and not settings.socket_mode
    assert settings.slack_bot_token == ""
    assert (settings.oauth.client_id, settings.oauth.client_secret) == ("1111.2222", "secret")
    assert settings.oauth.scopes == BOT_SCOPES and settings.oauth.redirect_uri is None
    custom = Settings.from_env(
        {
            **OAUTH,
            "SLACK_SCOPES": "chat:write, files:read",
            "SLACK_REDIRECT_URI": "https://bot.example/slack/oauth_redirect",
        }
    )
    assert custom.oauth is not None and custom.oauth.scopes == ("chat:write", "files:read")
    assert custom.oauth.redirect_uri == "https://bot.example/slack/oauth_redirect"
    assert Settings.from_env(SOCKET).oauth is None


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        pytest.param({"SLACK_CLIENT_SECRET": ""}, "SLACK_CLIENT_SECRET", id="id-without-secret"),
        pytest.param({"SLACK_CLIENT_ID": ""}, "SLACK_CLIENT_ID", id="secret-without-id"),
        pytest.param({"SLACK_APP_TOKEN": "xapp-1"}, "SLACK_APP_TOKEN", id="oauth-in-socket-mode"),
        pytest.param({"SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET", id="oauth-without-signing-secret"),
        pytest.param({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_BOT_TOKEN", id="oauth-and-a-bot-token"),
        pytest.param({"SLACK_SCOPES": "chat:write,#files"}, "SLACK_SCOPES", id="malformed-scope"),
        pytest.param({"SLACK_SCOPES": ","}, "SLACK_SCOPES", id="no-scope"),
        pytest.param({"SLACK_REDIRECT_URI": "bot.example/x"}, "SLACK_REDIRECT_URI", id="redirect-without-scheme"),
    ],
)
def test_bad_oauth_combinations_name_the_variable(override: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**OAUTH, **override})
    assert info.value.variable == variable


def test_oauth_variables_without_client_credentials_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**SOCKET, "SLACK_REDIRECT_URI": "https://bot.example/slack/oauth_redirect"})
    assert info.value.variable == "SLACK_REDIRECT_URI"


def test_ask_settings_need_only_the_openai_key_and_ignore_slack() -> None:
    from bot.config import ask_settings_from_env

    settings = ask_settings_from_env({"OPENAI_API_KEY": "sk-1", "SLACK_BOT_TOKEN": "bogus"}, dotenv_path=None)
    assert settings.openai_api_key == "sk-1" and settings.openai_model == "gpt-5.1"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        ask_settings_from_env({"SLACK_BOT_TOKEN": "xoxb-1"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="FILE_SIZE_LIMIT_MB"):
        ask_settings_from_env({"OPENAI_API_KEY": "sk-1", "FILE_SIZE_LIMIT_MB": "0"}, dotenv_path=None)
