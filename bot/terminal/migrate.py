"""`python -m bot migrate`: bring the database (DATABASE_URL) to the newest schema and exit."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bot.config import database_url_from_env
from bot.errors import ConfigError, DatabaseUnavailable

EXIT_CONFIG = 2


def register(commands: Any) -> None:
    """Add `migrate` to `python -m bot`'s subcommands (`commands`: argparse's subparsers action)."""
    parser = commands.add_parser("migrate", help="upgrade the database schema and exit", description=__doc__)
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Needs only DATABASE_URL; prints the revision the database is at."""
    from bot.store.migrate import current_revision, head_revision, upgrade

    try:
        database_url = database_url_from_env(dotenv_path=args.env_file)
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
