"""`python -m bot forget <thread permalink | channel:ts | team:channel:ts>`: forget one thread from a terminal.

Needs DATABASE_URL and OPENAI_API_KEY (and OPENAI_BASE_URL if set), no Slack token: nothing is posted
in Slack; the next reply in the thread is told its data was deleted (like after a `forget` there).
Exit status: 0 when the thread's data was deleted (or it had no session: nothing to do, said so),
1 when some OpenAI objects could not be deleted yet (they are retried by the running bot's sweep, or
by running the command again), 2 for a bad argument or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openai

from bot.analysis.workspace import Workspace
from bot.config import TerminalAccess, terminal_access_from_env
from bot.errors import ConfigError, DatabaseUnavailable
from bot.governance.retention import Forgetter
from bot.store import Store

USAGE = (
    "usage: python -m bot forget <thread permalink | CHANNEL:TS | TEAM:CHANNEL:TS>  "
    "(e.g. https://x.slack.com/archives/C0123/p1700000000000100 or C0123:1700000000.000100)"
)
_ID = r"[A-Z0-9]{2,32}"
_TS = r"\d{9,11}\.\d{6}"
_KEYED = re.compile(rf"^(?:(?P<team>T[A-Z0-9]{{1,31}}):)?(?P<channel>{_ID}):(?P<ts>{_TS})$")
_PERMALINK_PATH = re.compile(rf"^/archives/(?P<channel>{_ID})/p(?P<digits>\d{{16}})/?$")


EXIT_BAD_INPUT = 2


def register(commands: Any) -> None:
    """Add `forget` to `python -m bot`'s subcommands (`commands`: argparse's subparsers action)."""
    parser = commands.add_parser(
        "forget",
        help="delete one thread's data (here and at OpenAI)",
        usage=USAGE.removeprefix("usage: "),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("thread", help="the thread's permalink, CHANNEL:TS or TEAM:CHANNEL:TS")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Exit 0 done or nothing to do, 1 some OpenAI objects left for later, 2 bad argument or configuration."""
    ref = parse_thread(args.thread)
    if ref is None:
        print(USAGE, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        access = terminal_access_from_env(dotenv_path=args.env_file)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        status, text = asyncio.run(forget_thread(ref, access=access))
    except DatabaseUnavailable as err:
        print(f"database error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(text, file=sys.stdout if status != EXIT_BAD_INPUT else sys.stderr)
    return status


@dataclass(frozen=True)
class ThreadRef:
    """A thread named on the command line; `team_id` only when it was given."""

    channel: str
    ts: str
    team_id: str | None = None


def parse_thread(text: str) -> ThreadRef | None:
    """A Slack permalink (`…/archives/C123/p1700000000000100`, `?thread_ts=` wins for a reply's link),
    `C123:1700000000.000100` or `T1:C123:1700000000.000100`; None when it is none of these."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        match = _PERMALINK_PATH.match(parts.path)
        if match is None:
            return None
        digits = match["digits"]
        ts = f"{digits[:10]}.{digits[10:]}"
        thread_ts = parse_qs(parts.query).get("thread_ts", [])
        if thread_ts:
            if not re.fullmatch(_TS, thread_ts[0]):
                return None
            ts = thread_ts[0]
        return ThreadRef(channel=match["channel"], ts=ts)
    match = _KEYED.match(text)
    if match is None:
        return None
    return ThreadRef(channel=match["channel"], ts=match["ts"], team_id=match["team"])


async def forget_thread(ref: ThreadRef, *, access: TerminalAccess) -> tuple[int, str]:
    """Forget the thread `ref` names; returns (exit status, the lines to print)."""
    store = await Store.open(access.database_url)
    client = openai.AsyncOpenAI(api_key=access.openai_api_key, base_url=access.openai_base_url, max_retries=3)
    try:
        threads = await store.retention.threads_by_message(ref.channel, ref.ts, ref.team_id)
        if len(threads) > 1:
            teams = ", ".join(f"{t.team_id}:{t.channel}:{t.thread_ts}" for t in threads)
            return 2, f"several workspaces have a thread there; name one as TEAM:CHANNEL:TS: {teams}"
        if not threads:
            return 0, f"no session for thread {ref.channel}:{ref.ts}; nothing to forget"
        thread = threads[0]
        forgetter = Forgetter(store=store.retention, workspace=Workspace(client))
        deleted = await forgetter.forget(thread, reason="forget")
        if deleted is None:
            return 0, f"no session for thread {thread.channel}:{thread.thread_ts}; nothing to forget"
        lines = [
            f"forgot thread {thread.team_id}:{thread.channel}:{thread.thread_ts}: deleted {deleted.files} file(s), "
            f"{deleted.conversations} conversation(s), {deleted.containers} container(s), "
            f"{deleted.responses} stored response(s) at OpenAI; its rows are gone (tombstone kept)"
        ]
        if deleted.failed:
            lines.append(f"{deleted.failed} OpenAI object(s) could not be deleted yet; run the command again later")
            return 1, "\n".join(lines)
        return 0, "\n".join(lines)
    finally:
        await client.close()
        await store.close()
