"""`python -m bot ask FILE [FILE ...] "question"`: the Slack bot's analysis, in a terminal.

The same intake (checks, encodings, profiles), conversation, container, instructions and model as a Slack
thread; the answer streams to stdout, progress lines go to stderr, the model's files are saved in `--out`.
Every file is checked before anything is sent: one bad file stops the command (exit 2) with nothing sent
to OpenAI. Exit status: 0 answered, 1 OpenAI (or the database) failed a turn, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import openai

from bot.analysis.turns import TurnRunner
from bot.analysis.workspace import Workspace
from bot.config import AskSettings, ask_settings_from_env
from bot.errors import ConfigError, DatabaseUnavailable, FileProblem, StoreUnavailable
from bot.governance.pricing import Pricing
from bot.i18n import Language, detect_language, t
from bot.store import Store
from bot.terminal.session import TerminalSession, session_thread
from bot.terminal.sink import TerminalSink
from bot.turn.intake import SUPPORTED_TYPES
from bot.turn.local_files import StagedFile, stage

EXIT_OPENAI = 1
EXIT_INPUT = 2
DEFAULT_OUT_DIR = "analysis-output"
PROMPT = "> "


def build_parser(prog: str = "python -m bot ask") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "args",
        nargs="*",
        metavar="FILE [FILE ...] QUESTION",
        help="data files, then the question. The last argument is the question unless it is an existing file "
        f"or ends like a data file ({', '.join(sorted('.' + k for k in SUPPORTED_TYPES))})",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT_DIR,
        help=f"folder for the charts and files the model makes (default: ./{DEFAULT_OUT_DIR}/)",
    )
    parser.add_argument(
        "--session",
        metavar="NAME",
        help="continue (or start) the named session, kept in DATABASE_URL: its files and memory carry over",
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")


def split_question(args: Sequence[str]) -> tuple[list[str], str | None]:
    """(files, question): the last argument is the question unless it looks like a file."""
    if not args:
        return [], None
    last = args[-1]
    looks_like_file = Path(last).suffix.lower().lstrip(".") in SUPPORTED_TYPES and "\n" not in last
    if looks_like_file or Path(last).is_file():
        return list(args), None
    return list(args[:-1]), last


def run(argv: Sequence[str], **streams: Any) -> int:
    """`main` for an argument list (argparse exits 2 on a bad one)."""
    return main(build_parser().parse_args(list(argv)), **streams)


def main(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Answer the question (or, with no question and a terminal on `stdin`, each line typed until an empty
    line or end of input); returns the exit status."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    files, question = split_question(args.args)
    interactive = question is None and _is_tty(stdin)
    if question is None and not interactive:
        print("ask: give a question as the last argument (or run it in a terminal to type questions)", file=stderr)
        return EXIT_INPUT
    try:
        settings = ask_settings_from_env(environ, dotenv_path=args.env_file)
    except ConfigError as err:
        print(f"configuration error: {err}", file=stderr)
        return EXIT_INPUT
    # The terminal is for the answer: log lines only for errors, unless LOG_LEVEL=DEBUG asks for everything.
    logging.basicConfig(
        level=logging.DEBUG if settings.log_level == "DEBUG" else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=stderr,
    )
    lang = detect_language(question or "")

    def next_question() -> str | None:
        stdout.write(PROMPT)
        stdout.flush()
        line = stdin.readline()
        return line.strip() or None

    try:
        return asyncio.run(
            _ask(
                settings,
                files=[Path(f) for f in files],
                question=question,
                next_question=next_question if interactive else None,
                session=args.session,
                out_dir=Path(args.out),
                lang=lang,
                stdout=stdout,
                stderr=stderr,
            )
        )
    except (DatabaseUnavailable, StoreUnavailable) as err:
        print(f"database error: {err}", file=stderr)
        return EXIT_OPENAI


async def _ask(
    settings: AskSettings,
    *,
    files: list[Path],
    question: str | None,
    next_question: Callable[[], str | None] | None,
    session: str | None,
    out_dir: Path,
    lang: Language,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    with tempfile.TemporaryDirectory(prefix="bot-ask-") as tmp:
        staged: list[StagedFile] = []
        for index, path in enumerate(files):
            try:
                staged.append(await stage(path, Path(tmp) / str(index), limit_bytes=settings.file_size_limit_bytes))
            except FileProblem as problem:
                print(t(problem.message_key, lang, **problem.params), file=stderr)
                return EXIT_INPUT
        store = await Store.open(settings.database_url)
        client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            max_retries=3,
            timeout=openai.Timeout(600.0, connect=10.0),
        )
        sink = TerminalSink(stdout=stdout, stderr=stderr, out_dir=out_dir)
        try:
            terminal = TerminalSession(
                thread=session_thread(session or f"once-{uuid.uuid4().hex[:12]}"),
                store=store,
                workspace=Workspace(client, memory_limit=settings.container_memory_limit),
                runner=TurnRunner(client, model=settings.openai_model, instructions=settings.instructions),
                pricing=Pricing(container_memory_limit=settings.container_memory_limit),
                sink=sink,
            )
            status = 0
            pending: Sequence[StagedFile] = staged
            while True:
                if question is None:
                    question = await asyncio.to_thread(next_question) if next_question else None
                    if question is None:
                        break
                answered = await terminal.ask(question, pending)
                pending = ()
                for path in sink.saved:
                    stdout.write(f"{t('terminal.saved', detect_language(question), path=path)}\n")
                stdout.flush()
                if not answered:
                    status = EXIT_OPENAI
                if next_question is None:
                    break
                question = None
            return status
        finally:
            await client.close()
            await store.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:
        return False


def register(commands: Any) -> None:
    """Add `ask` to `python -m bot`'s subcommands (`commands`: argparse's subparsers action)."""
    parser = commands.add_parser(
        "ask",
        help="analyse local files in the terminal (needs only OPENAI_API_KEY)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=main)
