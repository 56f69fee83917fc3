"""Command line: `python -m bot [COMMAND] …`; each command's arguments and code live in `bot.terminal`.

Commands: run (the default: serve the bot), ask, check, migrate, usage, forget. `python -m bot` with no
command, or with only run's options (`--env-file`, `--check-config`), runs the bot.
"""

from __future__ import annotations

import argparse
import sys

from bot.terminal import ask, check, forget, migrate, run, usage

EXIT_CONFIG = 2
COMMANDS = ("run", "ask", "check", "migrate", "usage", "forget")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for module in (run, ask, check, migrate, usage, forget):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bot` and the `slack-csv-analyst` script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    # Bad arguments exit through argparse (SystemExit(2) with a usage line), as they always have.
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status
