"""`python -m bot check`: try every setting against the real services, one line per check.

`✓ what works` or `✗ what does not — fix: one sentence`. The checks: the settings parse; Slack accepts
SLACK_BOT_TOKEN (auth.test) and the token holds every scope of manifest.yml (Slack lists the granted ones
in the `x-oauth-scopes` header); SLACK_APP_TOKEN opens a Socket Mode connection (apps.connections.open)
when set; OpenAI accepts OPENAI_API_KEY and knows OPENAI_MODEL (models.retrieve); the database answers
and its schema is current. Exit 0 only when every check passes, else 1 (2 when the settings do not parse,
as for `run`). `--check-config` (of `run`) stays the offline subset: it only parses the settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import openai
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis.startup import check_model
from bot.config import BOT_SCOPES, Settings
from bot.errors import ConfigError, DatabaseUnavailable, ServiceUnreachable
from bot.slack.startup import NETWORK_ERRORS, socket_mode_url
from bot.store.migrate import current_revision, head_revision

EXIT_FAILED = 1
EXIT_CONFIG = 2
OK, FAILED = "✓", "✗"


@dataclass(frozen=True)
class Result:
    """One line of the checklist."""

    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{OK} {self.what}" if self.ok else f"{FAILED} {self.what} — fix: {self.fix}"


def register(commands: Any) -> None:
    """Add `check` to `python -m bot`'s subcommands (`commands`: argparse's subparsers action)."""
    parser = commands.add_parser(
        "check",
        help="try the settings against Slack, OpenAI and the database",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        settings = Settings.from_env(environ, dotenv_path=args.env_file)
    except ConfigError as err:
        print(Result(False, f"settings: {err}", f"set {err.variable} as the message says").line(), file=out)
        return EXIT_CONFIG
    mode = "Socket Mode" if settings.socket_mode else f"HTTP mode on port {settings.port}"
    print(Result(True, f"settings parse ({mode}, model {settings.openai_model})").line(), file=out, flush=True)
    results = asyncio.run(_checks(settings, out))
    return 0 if all(r.ok for r in results) else EXIT_FAILED


async def _checks(settings: Settings, out: TextIO) -> list[Result]:
    results: list[Result] = []

    def show(result: Result) -> None:
        results.append(result)
        print(result.line(), file=out, flush=True)

    slack = AsyncWebClient(token=settings.slack_bot_token or None, base_url=settings.slack_api_url)
    if settings.oauth is None:
        for result in await check_slack_token(slack):
            show(result)
    else:
        # Several workspaces: each installation's token is checked by Slack as its events arrive.
        show(Result(True, "OAuth install mode (SLACK_CLIENT_ID): workspaces install at /slack/install"))
    if settings.slack_app_token is not None:
        show(await check_app_token(slack, app_token=settings.slack_app_token))
    client = openai.AsyncOpenAI(api_key=settings.openai_api_key, base_url=settings.openai_base_url, max_retries=0)
    try:
        show(await check_openai(client, model=settings.openai_model))
    finally:
        await client.close()
    show(await check_database(settings.database_url))
    return results


async def check_slack_token(client: AsyncWebClient) -> list[Result]:
    """auth.test with the bot token, then its granted scopes against manifest.yml's."""
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown")
        fix = "copy the Bot User OAuth Token (xoxb-…) again from the app's 'OAuth & Permissions' page"
        return [Result(False, f"SLACK_BOT_TOKEN was rejected by Slack ({error})", fix)]
    except NETWORK_ERRORS as exc:
        fix = "check the network, the proxy settings (HTTPS_PROXY) and SLACK_API_URL"
        return [Result(False, f"cannot reach Slack at {client.base_url} ({exc.__class__.__name__})", fix)]
    who = f"@{response.get('user')} in {response.get('team')}"
    granted = {s.strip() for s in str(response.headers.get("x-oauth-scopes", "")).split(",") if s.strip()}
    missing = [s for s in BOT_SCOPES if s not in granted]
    scopes = (
        Result(True, f"the bot token holds every scope of manifest.yml ({len(BOT_SCOPES)})")
        if not missing
        else Result(
            False,
            f"the bot token lacks the scope{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            "add them under 'OAuth & Permissions' → Bot Token Scopes (or import manifest.yml), then reinstall the app",
        )
    )
    return [Result(True, f"SLACK_BOT_TOKEN accepted by Slack ({who})"), scopes]


async def check_app_token(client: AsyncWebClient, *, app_token: str) -> Result:
    """apps.connections.open with the app-level token (the URL it returns is not used)."""
    try:
        await socket_mode_url(client, app_token=app_token)
    except ConfigError as err:
        fix = "generate an app-level token with the connections:write scope ('Basic Information' → 'App-Level Tokens')"
        return Result(False, str(err).split(":", 1)[0], fix)
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown")
        return Result(False, f"SLACK_APP_TOKEN could not open a Socket Mode connection ({error})", _SOCKET_MODE_FIX)
    return Result(True, "SLACK_APP_TOKEN opens a Socket Mode connection")


_SOCKET_MODE_FIX = "turn on Socket Mode in the app's settings ('Socket Mode' page)"


async def check_openai(client: openai.AsyncOpenAI, *, model: str) -> Result:
    """models.retrieve(model): the key and the model in one call."""
    try:
        await check_model(client, model=model)
    except ServiceUnreachable as err:
        fix = "check the network, the proxy settings (HTTPS_PROXY) and OPENAI_BASE_URL"
        return Result(False, f"cannot reach OpenAI at {err.host} ({err.reason})", fix)
    except ConfigError as err:
        if err.variable == "OPENAI_MODEL":
            fix = "set OPENAI_MODEL to a model this key can use that supports code interpreter, such as gpt-5.1"
            return Result(False, f"OPENAI_MODEL {model!r} does not exist for this key", fix)
        fix = "create a key at https://platform.openai.com/api-keys and set OPENAI_API_KEY to it"
        return Result(False, str(err).split(":", 1)[0], fix)
    return Result(True, f"OPENAI_API_KEY accepted by OpenAI; model {model!r} exists")


async def check_database(database_url: str) -> Result:
    """The database answers and records the newest schema revision."""
    try:
        revision = await current_revision(database_url)
    except DatabaseUnavailable as err:
        fix = "check DATABASE_URL and that the database server is running and reachable"
        return Result(False, f"the database does not answer ({err})", fix)
    if revision != head_revision():
        return Result(
            False,
            f"the database schema is at revision {revision or 'none'}, this bot needs {head_revision()}",
            "run python -m bot migrate",
        )
    return Result(True, f"the database answers; schema at revision {revision} (current)")
