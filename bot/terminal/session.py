"""One terminal session: the turns of `python -m bot ask`, run with the Slack turn's own stages.

A session is stored like a Slack thread under a synthetic key (team "local", channel "terminal",
thread_ts = the session's name), in the same tables: its files, conversation and container carry over
between runs of `ask --session NAME`, and its turns are recorded (and counted by `python -m bot usage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from bot.analysis.turns import TurnRunner
from bot.analysis.workspace import Workspace
from bot.domain import Incoming, Session, ThreadFile, ThreadKey, Turn
from bot.errors import BotError
from bot.events import TurnDone, Usage
from bot.governance.pricing import Pricing
from bot.i18n import Language, t
from bot.store import Store
from bot.store.deployment_files import DeploymentFiles
from bot.terminal.sink import TerminalSink
from bot.turn.answer import answer_recovering, incomplete_note
from bot.turn.chart_font import ChartFonts
from bot.turn.environment import Environments
from bot.turn.files_in import upload_name
from bot.turn.local_files import LOCAL_ID_PREFIX, StagedFile
from bot.turn.outputs import OutputDelivery

log = logging.getLogger(__name__)

LOCAL_TEAM = "local"
TERMINAL_CHANNEL = "terminal"
TERMINAL_USER = "terminal"


def session_thread(name: str) -> ThreadKey:
    """The thread a terminal session named `name` is stored as."""
    return ThreadKey(team_id=LOCAL_TEAM, channel=TERMINAL_CHANNEL, thread_ts=name)


@dataclass
class _Counts:
    containers_created: int = 0
    bytes_uploaded: int = 0
    usage: Usage = field(default_factory=Usage)


class TerminalSession:
    """Runs questions in one session; `ask` returns True when the answer came, False after an error
    (told on stderr in the sentence a Slack user would get)."""

    def __init__(
        self,
        *,
        thread: ThreadKey,
        store: Store,
        workspace: Workspace,
        runner: TurnRunner,
        pricing: Pricing,
        sink: TerminalSink,
    ) -> None:
        self._thread = thread
        self._store = store
        self._workspace = workspace
        self._runner = runner
        self._pricing = pricing
        self._sink = sink
        # The same containers as in Slack, with the Hangul chart font.
        fonts = ChartFonts(files=DeploymentFiles(store.engine), workspace=workspace)
        self._environments = Environments(store=store, workspace=workspace, fonts=fonts)
        self._outputs = OutputDelivery(store=store, workspace=workspace)
        self._last_ts = 0.0

    def _next_ts(self) -> str:
        """A message ts of our own (unique within the session, like Slack's)."""
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    async def ask(self, question: str, files: Sequence[StagedFile] = ()) -> bool:
        """Upload `files` new to the session, answer `question`, save the outputs; record the turn."""
        incoming = Incoming(
            thread=self._thread,
            ts=self._next_ts(),
            user_id=TERMINAL_USER,
            text=question,
            files=(),
            is_thread_reply=False,
            starts_session=True,
        )
        turn = await self._store.accept_message(incoming)
        if turn is None or await self._store.start_turn(turn.id) is None:
            raise BotError(f"turn for {incoming.ts} was not recorded")
        self._sink.begin()
        counts = _Counts()
        started = time.monotonic()
        outcome: dict[str, object] = {"status": "failed", "outcome": "interrupted"}
        try:
            async with self._lease(turn):
                try:
                    done = await self._answer(turn, files, counts)
                except BotError as err:
                    log.info("turn %s failed: %s (%s)", turn.id, err.__class__.__name__, err.detail)
                    self._sink.end_answer()
                    self._sink.line(t(err.message_key, turn.language, request_id=err.request_id, **err.params))
                    outcome = {"status": "failed", "outcome": err.__class__.__name__, "model": self._runner.model}
                    return False
            outcome = {
                "status": "done",
                "outcome": done.incomplete_reason or "completed",
                "response_id": done.response_id,
                "model": self._runner.model,
            }
            counts.usage = done.usage
            return True
        finally:
            await self._finish(turn, counts, duration_s=time.monotonic() - started, **outcome)

    @contextlib.asynccontextmanager
    async def _lease(self, turn: Turn) -> AsyncIterator[None]:
        """Keep the turn's claim while it runs, so a bot sharing the database never takes it over."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._store.lease_s / 3)
                with contextlib.suppress(BotError):
                    await self._store.renew_leases({turn.id})

        task = asyncio.create_task(renew(), name=f"lease-{turn.id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _finish(self, turn: Turn, counts: _Counts, **outcome: object) -> None:
        model = outcome.get("model")
        cost = self._pricing.cost_usd(
            model if isinstance(model, str) else None, counts.usage, containers_created=counts.containers_created
        )
        usage = counts.usage
        await self._store.finish_turn(
            turn.id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            containers_created=counts.containers_created,
            bytes_uploaded=counts.bytes_uploaded,
            cost_usd=cost,
            **outcome,  # type: ignore[arg-type]
        )

    async def _upload(self, files: Sequence[StagedFile], counts: _Counts, lang: Language) -> set[str]:
        """Upload the files the session does not hold yet (same bytes: once); returns their ids."""
        existing = await self._store.thread_files(self._thread)
        known = {f.slack_file_id for f in existing} | {
            f"{LOCAL_ID_PREFIX}{f.sha256[:24]}" for f in existing if f.sha256
        }
        names = {f.filename for f in existing}
        new_ids: set[str] = set()
        for staged in files:
            if staged.file_id in known:
                log.info("%s is already in session %s; not uploaded again", staged.name, self._thread.thread_ts)
                continue
            known.add(staged.file_id)
            name = upload_name(staged.name, names)
            self._sink.line(t("status.reading_files", lang, filename=staged.name).removeprefix("is "))
            openai_file_id = await self._workspace.upload_file(staged.upload_path, filename=name)
            renamed = " (renamed: the session already has another file of this name)" if name != staged.name else ""
            await self._store.add_thread_file(
                self._thread,
                ThreadFile(
                    slack_file_id=staged.file_id,
                    openai_file_id=openai_file_id,
                    filename=name,
                    size_bytes=staged.size_bytes,
                    description=f"given on the command line as `{staged.name}`{renamed}; {staged.description}",
                    sha256=staged.sha256,
                ),
            )
            names.add(name)
            new_ids.add(staged.file_id)
            counts.bytes_uploaded += staged.size_bytes
        return new_ids

    async def _answer(self, turn: Turn, files: Sequence[StagedFile], counts: _Counts) -> TurnDone:
        session = await self._store.session(self._thread) or Session(thread=self._thread)
        new_ids = await self._upload(files, counts, turn.language)
        thread_files = await self._store.thread_files(self._thread)
        env = await self._environments.prepare(session, thread_files, new_ids)
        counts.containers_created += env.containers_created
        done, outputs, created = await answer_recovering(
            runner=self._runner,
            environments=self._environments,
            reply=self._sink,
            turn=turn,
            thread=self._thread,
            files=thread_files,
            new_ids=new_ids,
            env=env,
        )
        counts.containers_created += created
        await self._sink.flush()
        self._sink.end_answer()
        await self._outputs.deliver(self._sink, turn.language, done, outputs)
        if not self._sink.has_text and not self._sink.saved:
            self._sink.line(t("turn.empty_answer", turn.language))
        if (note := incomplete_note(done, turn.language)) is not None:
            self._sink.line(note)
        return done
