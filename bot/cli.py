"""Command line: `run` (the default) serves the bot until SIGTERM/SIGINT; `migrate` upgrades the database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from bot.config import Settings, database_url_from_env, terminal_access_from_env
from bot.errors import ConfigError, DatabaseUnavailable

EXIT_CONFIG = 2
log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bot` and the `slack-csv-analyst` script; returns the exit status.

    `python -m bot usage …` prints the spending report (see `bot.terminal.usage`); it needs only
    DATABASE_URL. `python -m bot forget …` deletes one thread's data (see `bot.terminal.forget`).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["usage"]:
        return _usage(argv[1:])
    if argv[:1] == ["forget"]:
        return _forget(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "migrate"],
        default="run",
        help="run: serve the bot (default); migrate: bring the database (DATABASE_URL) to the newest schema and "
        "exit; forget <thread permalink | CHANNEL:TS>: delete one thread's data (python -m bot forget -h)",
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        return _migrate(env_file=args.env_file)
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
        ),
    )
    if args.check_config:
        mode = "Socket Mode" if settings.socket_mode else f"HTTP mode on port {settings.port}"
        print(f"configuration ok: {mode}, model {settings.openai_model}")
        return 0
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(settings))
    except ConfigError as err:
        print(f"{err.headline}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnavailable as err:
        print(f"database error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _migrate(*, env_file: str) -> int:
    """`python -m bot migrate`: needs only DATABASE_URL; prints the revision the database is at."""
    from bot.store.migrate import current_revision, head_revision, upgrade

    try:
        database_url = database_url_from_env(dotenv_path=env_file)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG

    async def migrate() -> str | None:
        await upgrade(database_url)
        return await current_revision(database_url)

    try:
        revision = asyncio.run(migrate())
    except DatabaseUnavailable as err:
        print(f"database error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    head = " (head)" if revision == head_revision() else ""
    print(f"database at revision {revision}{head}")
    return 0


def _usage(argv: list[str]) -> int:
    from bot.terminal import usage

    try:
        database_url = database_url_from_env()
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return usage.run(argv, database_url=database_url)


def _forget(argv: list[str]) -> int:
    """`python -m bot forget <thread>`: see `bot.terminal.forget` (exit 0 done or nothing to do, 1 some
    OpenAI objects left for later, 2 bad argument or configuration)."""
    from bot.terminal.forget import USAGE, forget_thread, parse_thread

    parser = argparse.ArgumentParser(prog="python -m bot forget", usage=USAGE.removeprefix("usage: "))
    parser.add_argument("thread")
    parser.add_argument("--env-file", default=".env")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    ref = parse_thread(args.thread)
    if ref is None:
        print(USAGE, file=sys.stderr)
        return EXIT_CONFIG
    try:
        access = terminal_access_from_env(dotenv_path=args.env_file)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        status, text = asyncio.run(forget_thread(ref, access=access))
    except DatabaseUnavailable as err:
        print(f"database error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    print(text, file=sys.stdout if status != EXIT_CONFIG else sys.stderr)
    return status


async def _run(settings: Settings) -> None:
    from bot.app import build_bot, serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bot = await build_bot(settings)
    log.info("starting (%s)", "Socket Mode" if settings.socket_mode else "HTTP mode")
    await serve(bot, stop=stop)
    log.info("stopped")
