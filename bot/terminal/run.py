"""`python -m bot [run]`: serve the bot until SIGTERM/SIGINT; `--check-config` only validates the settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from bot.config import Settings
from bot.errors import ConfigError, DatabaseUnavailable

EXIT_CONFIG = 2
log = logging.getLogger("bot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings offline (nothing is contacted) and exit; `check` also tries them",
    )


def register(commands: Any) -> None:
    """Add `run` to `python -m bot`'s subcommands (`commands`: argparse's subparsers action)."""
    parser = commands.add_parser("run", help="serve the bot (the default command)", description=__doc__)
    add_arguments(parser)
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(dotenv_path=args.env_file)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    from bot.ops.logging import setup as setup_logging

    setup_logging(
        level=settings.log_level,
        log_format=settings.log_format,
        secrets=(
            settings.slack_bot_token,
            settings.slack_app_token,
            settings.slack_signing_secret,
            settings.openai_api_key,
            settings.oauth.client_secret if settings.oauth is not None else None,
        ),
    )
    if args.check_config:
        mode = "Socket Mode" if settings.socket_mode else f"HTTP mode on port {settings.port}"
        print(f"configuration ok: {mode}, model {settings.openai_model}")
        return 0
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_until_signal(settings))
    except ConfigError as err:
        print(f"{err.headline}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnavailable as err:
        print(f"database error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


async def serve_until_signal(settings: Settings) -> None:
    """Build the bot and serve it until SIGTERM or SIGINT."""
    from bot.app import build_bot, serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bot = await build_bot(settings)
    log.info("starting (%s)", "Socket Mode" if settings.socket_mode else "HTTP mode")
    await serve(bot, stop=stop)
    log.info("stopped")
