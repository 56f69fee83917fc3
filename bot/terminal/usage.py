"""`python -m bot usage`: what the bot spent, from the database, as a table, CSV or JSON (totals last)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from bot.config import database_url_from_env
from bot.errors import ConfigError, DatabaseUnavailable
from bot.store.engine import create_engine
from bot.store.migrate import current_revision, head_revision
from bot.store.usage import GROUP_BY, GroupBy, UsageLedger, UsageRow, total

FORMATS = ("table", "csv", "json")
COLUMNS = (
    "turns",
    "input",
    "cached input",
    "output",
    "reasoning",
    "containers",
    "MB uploaded",
    "cost USD",
)
EXIT_DATABASE = 1


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


DESCRIPTION = "Usage and estimated cost of finished turns, from the bot's DATABASE_URL (days in UTC)."


def build_parser(prog: str = "python -m bot usage") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def register(commands: Any) -> None:
    """Add `usage` to `python -m bot`'s subcommands (`commands`: argparse's subparsers action)."""
    parser = commands.add_parser("usage", help="what the bot spent (table, CSV or JSON)", description=DESCRIPTION)
    add_arguments(parser)

    def handler(args: argparse.Namespace) -> int:
        try:
            database_url = database_url_from_env()
        except ConfigError as err:
            print(f"configuration error: {err}", file=sys.stderr)
            return 2
        return report(args, parser=parser, database_url=database_url)

    parser.set_defaults(handler=handler)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_day, help="first day included (YYYY-MM-DD, UTC)")
    parser.add_argument("--until", type=_day, help="last day included (YYYY-MM-DD, UTC)")
    parser.add_argument("--by", choices=GROUP_BY, default="day", help="group by (default: day)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def run(argv: Sequence[str], *, database_url: str, out: TextIO | None = None) -> int:
    """Parse `argv` (argparse exits 2 on bad input), read the report from `database_url`, print it."""
    parser = build_parser()
    return report(parser.parse_args(list(argv)), parser=parser, database_url=database_url, out=out)


def report(
    args: argparse.Namespace, *, parser: argparse.ArgumentParser, database_url: str, out: TextIO | None = None
) -> int:
    """Print the report `args` ask for (`parser.error`, exit 2, for a reversed date range)."""
    if args.since and args.until and args.until < args.since:
        parser.error("--until is before --since")
    since = _epoch(args.since) if args.since else None
    until = _epoch(args.until + timedelta(days=1)) if args.until else None
    try:
        rows = asyncio.run(_read(database_url, by=args.by, since=since, until=until))
    except (SQLAlchemyError, OSError, DatabaseUnavailable) as exc:
        print(f"usage: cannot read the database: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    except _Outdated as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    (out or sys.stdout).write(render(rows, by=args.by, fmt=args.format))
    return 0


class _Outdated(Exception):
    """The database's schema is older than this bot's (a report does not migrate it)."""


async def _read(database_url: str, *, by: GroupBy, since: float | None, until: float | None) -> list[UsageRow]:
    engine = create_engine(database_url, pool_size=1)
    try:
        revision = await current_revision(engine)
        if revision != head_revision():
            raise _Outdated(
                f"the database is at schema revision {revision or 'none'}, this bot needs {head_revision()}: "
                "run `python -m bot migrate` (or start the bot) first"
            )
        return await UsageLedger(engine).report(by=by, since=since, until=until)
    finally:
        await engine.dispose()


def _cells(row: UsageRow) -> list[str]:
    return [
        row.key,
        str(row.turns),
        str(row.input_tokens),
        str(row.cached_input_tokens),
        str(row.output_tokens),
        str(row.reasoning_tokens),
        str(row.containers_created),
        f"{row.bytes_uploaded / 1_000_000:.2f}",
        f"{row.cost_usd:.4f}",
    ]


def render(rows: list[UsageRow], *, by: str, fmt: str) -> str:
    """The report: `rows` then their total, as an aligned table, CSV or JSON."""
    everything = [*rows, total(rows)]
    header = [by, *COLUMNS]
    if fmt == "json":
        records = [{by: r.key, **_json_total(r)} for r in rows]
        return json.dumps({"by": by, "rows": records, "total": _json_total(everything[-1])}, indent=2) + "\n"
    table = [header, *(_cells(r) for r in everything)]
    if fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(table)
        return buffer.getvalue()
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(c) for c in table[1:-1]), rule, line(table[-1])]) + "\n"


def _json_total(row: UsageRow) -> dict[str, float | int]:
    return {
        "turns": row.turns,
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "containers_created": row.containers_created,
        "bytes_uploaded": row.bytes_uploaded,
        "cost_usd": round(row.cost_usd, 6),
    }
