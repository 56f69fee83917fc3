"""Settings: the only place that reads the environment (or a `.env` file)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import ConfigError

DEFAULT_MODEL = "gpt-5.1"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite:///bot.sqlite3"
DEFAULT_PORT = 3000
# OpenAI's per-file maximum for the Files API.
DEFAULT_FILE_SIZE_LIMIT_MB = 512

DEFAULT_INSTRUCTIONS = """\
You are a careful data analyst working inside a Slack thread.
The user's files are in /mnt/data; each turn's input lists them with their paths, sizes, \
encodings and a short profile. Use the python tool (code interpreter) to read and analyse them \
with pandas; never guess numbers you could compute.
Answer in the language of the user's question (Korean or English).
Keep answers readable in Slack: short paragraphs, bullet lists, small Markdown tables, no HTML.
For a small chart (line, bar, area or pie; at most 6 series and 20 categories, labels of at most \
20 characters) call the slack_chart function: Slack draws it natively, Hangul included. For anything \
else, or when slack_chart reports an error, draw it with matplotlib, save it as a PNG under /mnt/data \
and mention it; for Korean labels register the Hangul font that the turn's input names.
When you produce a result table the user may want, save it as CSV under /mnt/data.
If the data cannot answer the question, say so and suggest what would.
"""


FOLLOW_UP_MODES = ("anyone", "participants", "mention")
LOG_FORMATS = ("text", "json")
DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_RETENTION_SWEEP_S = 3600
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")
# The bot scopes the code needs: what `SLACK_SCOPES` defaults to in OAuth mode. tests/test_manifest.py checks
# that manifest.yml and manifest.http.yml ask for exactly these (and that the code uses each of them).
BOT_SCOPES = (
    "app_mentions:read",
    "chat:write",
    "files:read",
    "files:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "assistant:write",
    "users:read",
)
_SCOPE = re.compile(r"^[a-z][a-z0-9_.-]*(:[a-z0-9_.-]+)+$")


@dataclass(frozen=True)
class AccessPolicy:
    """Who may use the bot: each non-empty set must contain the asker's team, channel or user id."""

    teams: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    allow_dms: bool = True
    admin_contact: str = ""
    follow_ups: str = "anyone"  # one of FOLLOW_UP_MODES


@dataclass(frozen=True)
class PriceOverrides:
    """USD prices that replace the built-in table (per million tokens; per container session)."""

    input_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    container: float | None = None


@dataclass(frozen=True)
class Budgets:
    """Spending limits in USD (None: no limit). Days and months are UTC."""

    user_daily_usd: float | None = None
    channel_daily_usd: float | None = None
    team_monthly_usd: float | None = None


@dataclass(frozen=True)
class OAuth:
    """Slack's OAuth flow for installing the app in many workspaces (HTTP mode only)."""

    client_id: str
    client_secret: str
    redirect_uri: str | None = None
    scopes: tuple[str, ...] = BOT_SCOPES


@dataclass(frozen=True)
class Settings:
    """Validated configuration for one bot process.

    `slack_bot_token` is "" when `oauth` is set: each workspace's token then comes from its installation.
    """

    slack_bot_token: str
    openai_api_key: str
    oauth: OAuth | None = None
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    port: int = DEFAULT_PORT
    openai_base_url: str | None = None
    openai_model: str = DEFAULT_MODEL
    database_url: str = DEFAULT_DATABASE_URL
    instructions: str = DEFAULT_INSTRUCTIONS
    file_size_limit_mb: int = DEFAULT_FILE_SIZE_LIMIT_MB
    container_memory_limit: str = "4g"
    max_files_per_thread: int = 20
    max_thread_mb: int = 2048
    max_concurrent_turns: int = 16
    instance_id: str = ""
    turn_lease_s: float = 60.0
    log_level: str = "INFO"
    access: AccessPolicy = field(default_factory=AccessPolicy)
    prices: PriceOverrides = field(default_factory=PriceOverrides)
    budgets: Budgets = field(default_factory=Budgets)
    retention_days: float = DEFAULT_RETENTION_DAYS  # 0: keep everything
    retention_sweep_s: int = DEFAULT_RETENTION_SWEEP_S
    health_port: int | None = None  # Socket Mode: serve /healthz, /readyz, /metrics here (None: nothing listens)
    log_format: str = "text"  # one of LOG_FORMATS

    @property
    def socket_mode(self) -> bool:
        """True when the bot connects over Socket Mode (an app-level token is configured)."""
        return self.slack_app_token is not None

    @property
    def file_size_limit_bytes(self) -> int:
        return self.file_size_limit_mb * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv_path: str | None = ".env") -> Settings:
        """Build settings from `environ` (default: `os.environ` plus a `.env` file).

        Raises `ConfigError` naming the first missing or malformed variable and where to get it.
        """
        get = _reader(environ, dotenv_path)

        oauth = _oauth(get)
        bot_token = get("SLACK_BOT_TOKEN")
        if bot_token is None and oauth is None:
            raise ConfigError(
                "SLACK_BOT_TOKEN",
                "is not set: copy the Bot User OAuth Token (xoxb-…) from your Slack app's 'OAuth & Permissions' page "
                "(or set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to install in many workspaces)",
            )
        if bot_token is not None and oauth is not None:
            raise ConfigError(
                "SLACK_BOT_TOKEN",
                "must not be set with SLACK_CLIENT_ID: with OAuth each workspace's token comes from its installation",
            )
        if bot_token is not None and not bot_token.startswith("xoxb-"):
            raise ConfigError(
                "SLACK_BOT_TOKEN",
                "must be a bot token starting with 'xoxb-' (Slack app → 'OAuth & Permissions')",
            )
        app_token = get("SLACK_APP_TOKEN")
        if app_token is not None and not app_token.startswith("xapp-"):
            raise ConfigError(
                "SLACK_APP_TOKEN",
                "must be an app-level token starting with 'xapp-' with the connections:write scope "
                "(Slack app → 'Basic Information' → 'App-Level Tokens')",
            )
        signing_secret = get("SLACK_SIGNING_SECRET")
        if app_token is None and signing_secret is None:
            raise ConfigError(
                "SLACK_SIGNING_SECRET",
                "is required in HTTP mode (no SLACK_APP_TOKEN): copy it from the Slack app's "
                "'Basic Information' → 'App Credentials', or set SLACK_APP_TOKEN for Socket Mode",
            )
        if oauth is not None and app_token is not None:
            raise ConfigError(
                "SLACK_APP_TOKEN",
                "must not be set with SLACK_CLIENT_ID: installing in many workspaces needs HTTP mode "
                "(Slack must reach /slack/events and /slack/oauth_redirect); see manifest.http.yml",
            )
        api_key = get("OPENAI_API_KEY")
        if api_key is None:
            raise ConfigError(
                "OPENAI_API_KEY",
                "is not set: create a key at https://platform.openai.com/api-keys",
            )
        slack_api_url = get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
        if not slack_api_url.startswith(("http://", "https://")):
            raise ConfigError("SLACK_API_URL", "must be an http(s) URL such as https://slack.com/api/")
        if not slack_api_url.endswith("/"):
            slack_api_url += "/"
        base_url = get("OPENAI_BASE_URL")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError("OPENAI_BASE_URL", "must be an http(s) URL such as https://api.openai.com/v1")

        database_url = _database_url(get)

        instructions = _instructions(get)
        memory = _memory_limit(get)
        log_level = _log_level(get)
        log_format = (get("LOG_FORMAT") or "text").lower()
        if log_format not in LOG_FORMATS:
            raise ConfigError("LOG_FORMAT", f"must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
        health_port = get("HEALTH_PORT")

        return cls(
            slack_bot_token=bot_token or "",
            oauth=oauth,
            slack_app_token=app_token,
            slack_signing_secret=signing_secret,
            slack_api_url=slack_api_url,
            port=_int(get("PORT"), "PORT", DEFAULT_PORT, low=1, high=65535),
            openai_api_key=api_key,
            openai_base_url=base_url,
            openai_model=get("OPENAI_MODEL") or DEFAULT_MODEL,
            database_url=database_url,
            instructions=instructions,
            file_size_limit_mb=_int(
                get("FILE_SIZE_LIMIT_MB"), "FILE_SIZE_LIMIT_MB", DEFAULT_FILE_SIZE_LIMIT_MB, low=1, high=512
            ),
            container_memory_limit=memory,
            max_files_per_thread=_int(get("MAX_FILES_PER_THREAD"), "MAX_FILES_PER_THREAD", 20, low=1, high=500),
            max_thread_mb=_int(get("MAX_THREAD_MB"), "MAX_THREAD_MB", 2048, low=1, high=1_000_000),
            max_concurrent_turns=_int(get("MAX_CONCURRENT_TURNS"), "MAX_CONCURRENT_TURNS", 16, low=1, high=1000),
            log_level=log_level,
            instance_id=get("INSTANCE_ID") or "",
            turn_lease_s=float(_int(get("TURN_LEASE_S"), "TURN_LEASE_S", 60, low=1, high=3600)),
            access=_access_policy(get),
            prices=PriceOverrides(
                input_per_mtok=_usd(get("OPENAI_PRICE_INPUT_PER_MTOK"), "OPENAI_PRICE_INPUT_PER_MTOK"),
                cached_input_per_mtok=_usd(
                    get("OPENAI_PRICE_CACHED_INPUT_PER_MTOK"), "OPENAI_PRICE_CACHED_INPUT_PER_MTOK"
                ),
                output_per_mtok=_usd(get("OPENAI_PRICE_OUTPUT_PER_MTOK"), "OPENAI_PRICE_OUTPUT_PER_MTOK"),
                container=_usd(get("OPENAI_PRICE_CONTAINER"), "OPENAI_PRICE_CONTAINER"),
            ),
            budgets=Budgets(
                user_daily_usd=_usd(get("BUDGET_USER_DAILY_USD"), "BUDGET_USER_DAILY_USD", positive=True),
                channel_daily_usd=_usd(get("BUDGET_CHANNEL_DAILY_USD"), "BUDGET_CHANNEL_DAILY_USD", positive=True),
                team_monthly_usd=_usd(get("BUDGET_TEAM_MONTHLY_USD"), "BUDGET_TEAM_MONTHLY_USD", positive=True),
            ),
            retention_days=_decimal(get("RETENTION_DAYS"), "RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
            retention_sweep_s=_int(
                get("RETENTION_SWEEP_S"), "RETENTION_SWEEP_S", DEFAULT_RETENTION_SWEEP_S, low=1, high=7 * 86400
            ),
            health_port=None if health_port is None else _int(health_port, "HEALTH_PORT", 0, low=1, high=65535),
            log_format=log_format,
        )


def database_url_from_env(environ: Mapping[str, str] | None = None, *, dotenv_path: str | None = ".env") -> str:
    """Only `DATABASE_URL` (default: SQLite in the working directory), read and checked as `Settings` does.

    For commands that touch only the database (`python -m bot migrate`) and need no Slack or OpenAI
    credentials. Raises `ConfigError` when the URL is malformed.
    """
    return _database_url(_reader(environ, dotenv_path))


def _reader(environ: Mapping[str, str] | None, dotenv_path: str | None) -> Callable[[str], str | None]:
    """`get(name)`: the stripped value from `environ` (default: `os.environ` over the dotenv file), or None."""
    if environ is None:
        env: dict[str, str] = {}
        if dotenv_path and Path(dotenv_path).is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        env.update(os.environ)
    else:
        env = dict(environ)

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    return get


def _database_url(get: Callable[[str], str | None]) -> str:
    database_url = get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if not database_url.startswith(("sqlite", "postgresql", "postgres")):
        raise ConfigError(
            "DATABASE_URL",
            "must be a sqlite:///path or postgresql://user@host/db URL",
        )
    return database_url


def _oauth(get: Callable[[str], str | None]) -> OAuth | None:
    """SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (both or neither), SLACK_REDIRECT_URI, SLACK_SCOPES."""
    client_id, client_secret = get("SLACK_CLIENT_ID"), get("SLACK_CLIENT_SECRET")
    if client_id is None and client_secret is None:
        for name in ("SLACK_REDIRECT_URI", "SLACK_SCOPES"):
            if get(name) is not None:
                raise ConfigError(name, "is used only with SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (OAuth install)")
        return None
    where = "copy it from the Slack app's 'Basic Information' → 'App Credentials'"
    if client_id is None:
        raise ConfigError("SLACK_CLIENT_ID", f"is required with SLACK_CLIENT_SECRET: {where}")
    if client_secret is None:
        raise ConfigError("SLACK_CLIENT_SECRET", f"is required with SLACK_CLIENT_ID: {where}")
    redirect_uri = get("SLACK_REDIRECT_URI")
    if redirect_uri is not None and not redirect_uri.startswith(("https://", "http://")):
        raise ConfigError(
            "SLACK_REDIRECT_URI", "must be the https URL of /slack/oauth_redirect listed in the app's Redirect URLs"
        )
    scopes: tuple[str, ...] = BOT_SCOPES
    if (raw := get("SLACK_SCOPES")) is not None:
        scopes = tuple(part.strip() for part in raw.split(",") if part.strip())
        bad = [scope for scope in scopes if not _SCOPE.match(scope)]
        if not scopes or bad:
            raise ConfigError(
                "SLACK_SCOPES", f"must be comma-separated bot scopes such as chat:write,files:read, got {raw!r}"
            )
    return OAuth(client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri, scopes=scopes)


def _instructions(get: Callable[[str], str | None]) -> str:
    if (text := get("BOT_INSTRUCTIONS")) is not None:
        return text
    if (path := get("BOT_INSTRUCTIONS_FILE")) is None:
        return DEFAULT_INSTRUCTIONS
    try:
        instructions = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("BOT_INSTRUCTIONS_FILE", f"cannot be read ({exc.__class__.__name__}): {path}") from None
    if not instructions.strip():
        raise ConfigError("BOT_INSTRUCTIONS_FILE", f"is empty: {path}")
    return instructions


def _memory_limit(get: Callable[[str], str | None]) -> str:
    memory = get("CONTAINER_MEMORY_LIMIT") or "4g"
    if memory not in {"1g", "4g", "16g", "64g"}:
        raise ConfigError("CONTAINER_MEMORY_LIMIT", "must be one of 1g, 4g, 16g, 64g")
    return memory


def _log_level(get: Callable[[str], str | None]) -> str:
    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("LOG_LEVEL", "must be one of DEBUG, INFO, WARNING, ERROR")
    return log_level


def _int(raw: str | None, name: str, default: int, *, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value}")
    return value


def _access_policy(get: Callable[[str], str | None]) -> AccessPolicy:
    follow_ups = (get("FOLLOW_UPS") or "anyone").lower()
    if follow_ups not in FOLLOW_UP_MODES:
        raise ConfigError("FOLLOW_UPS", f"must be one of {', '.join(FOLLOW_UP_MODES)}, got {follow_ups!r}")
    return AccessPolicy(
        teams=_slack_ids(get("ALLOWED_TEAMS"), "ALLOWED_TEAMS"),
        channels=_slack_ids(get("ALLOWED_CHANNELS"), "ALLOWED_CHANNELS"),
        users=_slack_ids(get("ALLOWED_USERS"), "ALLOWED_USERS"),
        allow_dms=_bool(get("ALLOW_DMS"), "ALLOW_DMS", True),
        admin_contact=get("ADMIN_CONTACT") or "",
        follow_ups=follow_ups,
    )


def _slack_ids(raw: str | None, name: str) -> frozenset[str]:
    """Comma-separated Slack ids (`T0123`, `C0123`, `U0123`); empty means no restriction."""
    ids = [part.strip() for part in (raw or "").split(",") if part.strip()]
    for value in ids:
        if not _SLACK_ID.match(value):
            raise ConfigError(name, f"must be comma-separated Slack IDs such as T0123ABCD or C0123ABCD, got {value!r}")
    return frozenset(ids)


def _bool(raw: str | None, name: str, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _decimal(raw: str | None, name: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(name, f"must be zero or more, got {raw!r}")
    return value


def _usd(raw: str | None, name: str, *, positive: bool = False) -> float | None:
    """An optional amount in USD; budgets must be above zero."""
    if raw is None:
        return None
    value = _decimal(raw, name, 0.0)
    if positive and value == 0:
        raise ConfigError(name, f"must be more than 0 (leave it unset for no limit), got {raw!r}")
    return value


@dataclass(frozen=True)
class TerminalAccess:
    """The database and OpenAI alone, for terminal commands that need no Slack token (`forget`)."""

    database_url: str
    openai_api_key: str
    openai_base_url: str | None = None


def terminal_access_from_env(
    environ: Mapping[str, str] | None = None, *, dotenv_path: str | None = ".env"
) -> TerminalAccess:
    """`DATABASE_URL`, `OPENAI_API_KEY` (required) and `OPENAI_BASE_URL`, read and checked as `Settings` does.

    Raises `ConfigError` naming the variable.
    """
    return _terminal_access(_reader(environ, dotenv_path))


def _terminal_access(get: Callable[[str], str | None]) -> TerminalAccess:
    database_url = _database_url(get)
    api_key = get("OPENAI_API_KEY")
    if api_key is None:
        raise ConfigError("OPENAI_API_KEY", "is not set: create a key at https://platform.openai.com/api-keys")
    base_url = get("OPENAI_BASE_URL")
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise ConfigError("OPENAI_BASE_URL", "must be an http(s) URL such as https://api.openai.com/v1")
    return TerminalAccess(database_url=database_url, openai_api_key=api_key, openai_base_url=base_url)


@dataclass(frozen=True)
class AskSettings:
    """What `python -m bot ask` needs: OpenAI, the database and the analysis settings; no Slack at all."""

    openai_api_key: str
    openai_base_url: str | None = None
    openai_model: str = DEFAULT_MODEL
    database_url: str = DEFAULT_DATABASE_URL
    instructions: str = DEFAULT_INSTRUCTIONS
    file_size_limit_mb: int = DEFAULT_FILE_SIZE_LIMIT_MB
    container_memory_limit: str = "4g"
    log_level: str = "INFO"

    @property
    def file_size_limit_bytes(self) -> int:
        return self.file_size_limit_mb * 1024 * 1024


def ask_settings_from_env(environ: Mapping[str, str] | None = None, *, dotenv_path: str | None = ".env") -> AskSettings:
    """OPENAI_API_KEY (required), OPENAI_BASE_URL, OPENAI_MODEL, DATABASE_URL, BOT_INSTRUCTIONS(_FILE),
    FILE_SIZE_LIMIT_MB, CONTAINER_MEMORY_LIMIT and LOG_LEVEL, each checked as `Settings` checks it.

    No Slack variable is read. Raises `ConfigError` naming the variable.
    """
    get = _reader(environ, dotenv_path)
    access = _terminal_access(get)
    return AskSettings(
        openai_api_key=access.openai_api_key,
        openai_base_url=access.openai_base_url,
        openai_model=get("OPENAI_MODEL") or DEFAULT_MODEL,
        database_url=access.database_url,
        instructions=_instructions(get),
        file_size_limit_mb=_int(
            get("FILE_SIZE_LIMIT_MB"), "FILE_SIZE_LIMIT_MB", DEFAULT_FILE_SIZE_LIMIT_MB, low=1, high=512
        ),
        container_memory_limit=_memory_limit(get),
        log_level=_log_level(get),
    )
