"""Runs one turn's lifecycle: files in, environment, stream, outputs out, record; each stage is its own module.

This is the one place where a `BotError` becomes a message in the thread (`_report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis.turns import TurnRunner
from bot.analysis.workspace import Workspace
from bot.domain import Session, Turn
from bot.errors import BotError, StoreUnavailable
from bot.events import TurnDone, Usage
from bot.governance.budgets import BudgetGuard
from bot.governance.pricing import Pricing
from bot.i18n import Language, t
from bot.ops import metrics
from bot.ops.logging import turn_context
from bot.slack.clients import SlackClients
from bot.slack.reply import ThreadReply, feedback_blocks
from bot.store import Store
from bot.store.deployment_files import DeploymentFiles
from bot.turn.answer import answer_recovering, incomplete_note
from bot.turn.chart_font import ChartFonts
from bot.turn.environment import Environments
from bot.turn.files_in import FilesIn, ThreadLimits
from bot.turn.fresh_start import announce_fresh_start
from bot.turn.intake import Intake
from bot.turn.outputs import OutputDelivery
from bot.turn.scheduler import StopSignal
from bot.turn.title import name_thread

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """The user stopped the turn."""


@dataclass
class _Billable:
    """What a turn caused to be billed besides tokens, counted as the stages go (also when it fails)."""

    containers_created: int = 0
    bytes_uploaded: int = 0


# A turn that was started this many times and never finished is not tried again (it may be what
# crashes the process).
MAX_TURN_ATTEMPTS = 3


# Waits between attempts to record a turn's start or end while the database does not answer.
RECORD_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)

_T = TypeVar("_T")


async def _until_recorded(what: str, call: Callable[[], Awaitable[_T]]) -> _T:
    """`call()`, retried with back-off (the last delay repeating) until the database takes it.

    Only cancellation (shutdown) ends the wait; the turn then stays unfinished and is claimed again.
    """
    delays = iter(RECORD_RETRY_DELAYS_S)
    delay = RECORD_RETRY_DELAYS_S[0]
    while True:
        try:
            return await call()
        except StoreUnavailable as err:
            delay = next(delays, delay)
            log.error("could not %s: %s; retrying in %.1fs", what, err.detail, delay)
            await asyncio.sleep(delay)


def _count(usage: Usage, *, outcome: str, duration_s: float | None) -> None:
    """A turn this process recorded as finished, in its metrics (a turn another process took over counts
    there, so replicas' sums count each turn once)."""
    m = metrics.current()
    m.turns.labels(outcome=outcome).inc()
    if duration_s is not None:
        m.turn_duration.observe(duration_s)
    for kind, tokens in (
        ("input", usage.input_tokens),
        ("cached_input", usage.cached_input_tokens),
        ("output", usage.output_tokens),
        ("reasoning", usage.reasoning_tokens),
    ):
        m.openai_tokens.labels(kind=kind).inc(tokens)


class Conductor:
    """Answers turns. `run(turn)` never raises for problems a user can meet; it reports them."""

    def __init__(
        self,
        *,
        store: Store,
        slack: SlackClients,
        workspace: Workspace,
        runner: TurnRunner,
        intake: Intake,
        limits: ThreadLimits | None = None,
        pricing: Pricing | None = None,
        budgets: BudgetGuard | None = None,
    ) -> None:
        self._store = store
        self._pricing = pricing or Pricing()
        self._budgets = budgets
        self._slack = slack
        self._workspace = workspace
        self._runner = runner
        self._files_in = FilesIn(store=store, intake=intake, limits=limits or ThreadLimits())
        fonts = ChartFonts(files=DeploymentFiles(store.engine), workspace=workspace)
        self._environments = Environments(store=store, workspace=workspace, fonts=fonts)
        self._outputs = OutputDelivery(store=store, workspace=workspace)

    async def run(self, turn: Turn, stop: StopSignal | None = None) -> None:
        """Answer `turn` (see `_run`); its log records carry the turn's thread and id."""
        with turn_context(thread=turn.thread, turn_id=turn.id):
            await self._run(turn, stop)

    async def _run(self, turn: Turn, stop: StopSignal | None = None) -> None:
        """Answer `turn` in its thread and record the outcome; the turn is then finished for good.

        The turn runs only if this process still holds its claim (`Store.start_turn`). Setting `stop`
        cancels the answer (the OpenAI stream is closed, which ends the response) and tells the user it
        was stopped; with reason "lost_claim" it ends quietly, as another process answers the turn.
        Cancelling `run` itself (shutdown) leaves the turn unfinished, to be answered after the next start.
        """
        lang = turn.language
        attempt = await _until_recorded(f"start turn {turn.id}", lambda: self._store.start_turn(turn.id))
        if attempt is None:
            log.info("turn %s is finished or owned by another process; not running it here", turn.id)
            return
        slack = await self._slack.for_team(turn.thread.team_id)
        if slack is None:
            # Uninstalled between the event and now: there is no token to answer with, nor anyone to tell.
            log.warning("turn %s: the app is not installed in workspace %s; not answered", turn.id, turn.thread.team_id)
            await self._record(turn, _Billable(), status="failed", outcome="not_installed")
            return

        async def remember_answer_messages(message_ts: Sequence[str]) -> None:
            if len(message_ts) == 1:  # the first answer message just opened: its text is visible
                metrics.current().first_text.observe(time.monotonic() - turn.accepted_at)
            await self._store.set_answer_messages(turn.id, message_ts)

        reply = ThreadReply(
            client=slack,
            thread=turn.thread,
            recipient_user_id=turn.user_id,
            on_answer_message=remember_answer_messages,
        )
        started = time.monotonic()
        billable = _Billable()
        if turn.answer_messages:
            await reply.mark_interrupted(turn.answer_messages, t("turn.interrupted", lang))
        if attempt > MAX_TURN_ATTEMPTS:
            log.error("turn %s was interrupted %d times; giving up", turn.id, attempt - 1)
            await self._report(turn, reply, BotError(f"{attempt - 1} interrupted attempts"), lang)
            await self._record(turn, billable, status="failed", outcome="too_many_attempts")
            return
        await reply.set_status(t("status.thinking", lang))
        stop = stop or StopSignal()
        try:
            done = await self._answer_unless_stopped(turn, reply, lang, stop, billable, slack)
        except _Stopped:
            if stop.reason == "lost_claim":
                log.warning("turn %s was taken over by another process; stopped here", turn.id)
                return
            log.info("turn %s stopped by the user", turn.id)
            await self._tell(turn, reply, t("turn.stopped", lang))
            await self._record(turn, billable, status="done", outcome="stopped", duration_s=time.monotonic() - started)
            return
        except BotError as err:
            await self._report(turn, reply, err, lang)
            await self._record(
                turn,
                billable,
                status="failed",
                outcome=err.__class__.__name__,
                model=self._runner.model,
                duration_s=time.monotonic() - started,
            )
            return
        except Exception as exc:  # the one broad catch: anything unexpected still gets an answer
            log.exception("turn %s failed unexpectedly", turn.id)
            await self._report(turn, reply, BotError(repr(exc)), lang)
            await self._record(
                turn, billable, status="failed", outcome="unexpected", duration_s=time.monotonic() - started
            )
            return
        if done is None:
            await self._record(
                turn, billable, status="done", outcome="no_readable_file", duration_s=time.monotonic() - started
            )
            return
        cost = await self._record(
            turn,
            billable,
            usage=done.usage,
            status="done",
            outcome=done.incomplete_reason or "completed",
            response_id=done.response_id,
            model=self._runner.model,
            duration_s=time.monotonic() - started,
        )
        if self._budgets is not None and cost is not None:
            await self._warn(turn, reply, cost, lang)

    async def _record(
        self, turn: Turn, billable: _Billable, *, usage: Usage | None = None, **outcome: Any
    ) -> float | None:
        """Record the turn as finished with its usage and estimated cost, retrying while the database is
        away (the answer is already out); returns the cost, or None when another process holds the turn.

        The thread's next turn waits meanwhile, and this process keeps the turn's claim, so a finished
        answer is never answered again by this or another process.
        """
        usage = usage or Usage()
        cost = self._pricing.cost_usd(
            outcome.get("model") or self._runner.model, usage, containers_created=billable.containers_created
        )
        counts: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "containers_created": billable.containers_created,
            "bytes_uploaded": billable.bytes_uploaded,
            "cost_usd": cost,
        }
        held = await _until_recorded(
            f"finish turn {turn.id}", lambda: self._store.finish_turn(turn.id, **counts, **outcome)
        )
        if not held:
            log.warning("turn %s was taken over by another process before it was recorded here", turn.id)
            return None
        _count(usage, outcome=str(outcome.get("outcome")), duration_s=outcome.get("duration_s"))
        return cost

    async def _warn(self, turn: Turn, reply: ThreadReply, cost: float, lang: Language) -> None:
        """Under the answer, one line for each budget this turn took past 80 % (the first crossing only)."""
        assert self._budgets is not None
        try:
            lines = await self._budgets.warnings(turn, cost, lang)
            for line in lines:
                await reply.notice(line)
        except BotError as err:  # the answer is out and recorded; a missing warning is only logged
            log.error("could not check or post the budget warning for turn %s: %s", turn.id, err.detail)

    async def _answer_unless_stopped(
        self,
        turn: Turn,
        reply: ThreadReply,
        lang: Language,
        stop: StopSignal,
        billable: _Billable,
        slack: AsyncWebClient,
    ) -> TurnDone | None:
        answer = asyncio.create_task(self._answer(turn, reply, lang, billable, slack), name=f"answer-{turn.id}")
        stopped = asyncio.create_task(stop.wait(), name=f"stop-{turn.id}")
        try:
            await asyncio.wait({answer, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not answer.done():
                answer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answer
        if answer.cancelled():
            raise _Stopped
        return answer.result()

    async def _answer(
        self, turn: Turn, reply: ThreadReply, lang: Language, billable: _Billable, slack: AsyncWebClient
    ) -> TurnDone | None:
        """Answer `turn`; None when there was nothing to ask the model (only unreadable files).

        Raises `BudgetExhausted` before anything reaches OpenAI (file uploads included) when a spending
        limit is used up; `billable` counts the containers created and bytes uploaded on the way.
        """
        thread = turn.thread
        if self._budgets is not None:
            await self._budgets.ensure_within(turn)
        session = await self._store.session(thread) or Session(thread=thread)
        await announce_fresh_start(session, retention=self._store.retention, reply=reply, lang=lang)
        await name_thread(turn, session, reply)
        brought = await self._files_in.bring(turn, session, reply, lang, slack=slack)
        billable.bytes_uploaded += brought.uploaded_bytes
        files = await self._store.thread_files(thread)
        if brought.nothing_readable and not files:
            # The file notices are the whole reply: a model told of no file would only say so, at a cost.
            log.info("turn %s brought no readable file and the thread holds none; not asking the model", turn.id)
            await reply.set_status("")
            return None
        new_ids = brought.new_ids
        env = await self._environments.prepare(session, files, new_ids)
        billable.containers_created += env.containers_created
        done, outputs, created = await answer_recovering(
            runner=self._runner,
            environments=self._environments,
            reply=reply,
            turn=turn,
            thread=thread,
            files=files,
            new_ids=new_ids,
            env=env,
        )
        billable.containers_created += created
        # Text still held goes out before any upload (`deliver`), else in the closing call (`finish`).
        await self._outputs.deliver(reply, lang, done, outputs)
        if not reply.has_text and not outputs.cited and not outputs.images:
            await reply.write(t("turn.empty_answer", lang))
        await reply.finish(
            blocks=feedback_blocks(
                response_id=done.response_id, good_label=t("feedback.good", lang), bad_label=t("feedback.bad", lang)
            )
        )
        if (note := incomplete_note(done, lang)) is not None:
            await reply.notice(note)
        # A call only if a status was shown after the app's last reply (a reply clears it in Slack).
        await reply.set_status("")
        return done

    async def _report(self, turn: Turn, reply: ThreadReply, err: BotError, lang: Language) -> None:
        """Tell the user what went wrong, in their language; log the details and request id."""
        log.warning(
            "turn %s in %s failed: %s (%s) request_id=%s",
            turn.id,
            turn.thread,
            err.__class__.__name__,
            err.detail,
            err.request_id,
        )
        await self._tell(turn, reply, t(err.message_key, lang, request_id=err.request_id, **err.params))

    async def _tell(self, turn: Turn, reply: ThreadReply, text: str) -> None:
        """Close what was streamed so far and post `text` in the thread (failures only logged)."""
        try:
            await reply.finish()
            await reply.notice(text)
        except BotError as err:
            log.error("could not tell the user in %s: %s (%s)", turn.thread, err.detail, text[:80])
        await reply.set_status("")
