"""Runs one turn's lifecycle: files in, environment, stream, outputs out, record; each stage is its own module.

This is the one place where a `BotError` becomes a message in the thread (`_report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace

from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis.turns import TurnRunner
from bot.analysis.workspace import Workspace
from bot.domain import Session, ThreadFile, Turn
from bot.errors import BotError, ContainerExpired, OpenAIProblem
from bot.events import TurnDone
from bot.i18n import Language, t
from bot.slack.reply import ThreadReply, feedback_blocks
from bot.store import Store
from bot.turn.answer import incomplete_note, stream_answer
from bot.turn.environment import Environments
from bot.turn.files_in import FilesIn, ThreadLimits
from bot.turn.intake import Intake
from bot.turn.outputs import OutputDelivery
from bot.turn.prompt import turn_input

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """The user stopped the turn."""


# A turn that was started this many times and never finished is not tried again (it may be what
# crashes the process).
MAX_TURN_ATTEMPTS = 3


class Conductor:
    """Answers turns. `run(turn)` never raises for problems a user can meet; it reports them."""

    def __init__(
        self,
        *,
        store: Store,
        slack: AsyncWebClient,
        workspace: Workspace,
        runner: TurnRunner,
        intake: Intake,
        limits: ThreadLimits | None = None,
    ) -> None:
        self._store = store
        self._slack = slack
        self._workspace = workspace
        self._runner = runner
        self._files_in = FilesIn(store=store, slack=slack, intake=intake, limits=limits or ThreadLimits())
        self._environments = Environments(store=store, workspace=workspace)
        self._outputs = OutputDelivery(store=store, workspace=workspace)

    async def run(self, turn: Turn, stop: asyncio.Event | None = None) -> None:
        """Answer `turn` in its thread and record the outcome; the turn is then finished for good.

        Setting `stop` cancels the answer (the OpenAI stream is closed, which ends the response) and
        tells the user it was stopped. Cancelling `run` itself (shutdown) leaves the turn unfinished,
        to be answered after the next start.
        """
        lang = turn.language
        reply = ThreadReply(client=self._slack, thread=turn.thread, recipient_user_id=turn.user_id)
        started = time.monotonic()
        if turn.reply_ts:
            await reply.mark_interrupted(turn.reply_ts, t("turn.interrupted", lang))
        if turn.attempts >= MAX_TURN_ATTEMPTS:
            log.error("turn %s was interrupted %d times; giving up", turn.id, turn.attempts)
            await self._report(turn, reply, BotError(f"{turn.attempts} interrupted attempts"), lang)
            await self._store.finish_turn(turn.id, status="failed", outcome="too_many_attempts")
            return
        await self._store.start_turn(turn.id)
        await reply.set_status(t("status.thinking", lang))
        try:
            done = await self._answer_unless_stopped(turn, reply, lang, stop or asyncio.Event())
        except _Stopped:
            log.info("turn %s stopped by the user", turn.id)
            await self._tell(turn, reply, t("turn.stopped", lang))
            await self._store.finish_turn(
                turn.id, status="done", outcome="stopped", duration_s=time.monotonic() - started
            )
            return
        except BotError as err:
            await self._report(turn, reply, err, lang)
            await self._store.finish_turn(
                turn.id,
                status="failed",
                outcome=err.__class__.__name__,
                model=self._runner.model,
                duration_s=time.monotonic() - started,
            )
            return
        except Exception as exc:  # the one broad catch: anything unexpected still gets an answer
            log.exception("turn %s failed unexpectedly", turn.id)
            await self._report(turn, reply, BotError(repr(exc)), lang)
            await self._store.finish_turn(
                turn.id, status="failed", outcome="unexpected", duration_s=time.monotonic() - started
            )
            return
        await self._store.finish_turn(
            turn.id,
            status="done",
            outcome=done.incomplete_reason or "completed",
            response_id=done.response_id,
            model=self._runner.model,
            input_tokens=done.usage.input_tokens,
            output_tokens=done.usage.output_tokens,
            duration_s=time.monotonic() - started,
        )

    async def _answer_unless_stopped(
        self, turn: Turn, reply: ThreadReply, lang: Language, stop: asyncio.Event
    ) -> TurnDone:
        answer = asyncio.create_task(self._answer(turn, reply, lang), name=f"answer-{turn.id}")
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

    async def _answer(self, turn: Turn, reply: ThreadReply, lang: Language) -> TurnDone:
        thread = turn.thread
        session = await self._store.session(thread) or Session(thread=thread)
        new_ids = await self._files_in.bring(turn, session, reply, lang)
        files = await self._store.thread_files(thread)
        env = await self._environments.prepare(session, files, new_ids)
        for attempt in range(3):
            try:
                paths = await self._container_paths(env.container_id, files)
                input_text = turn_input(turn, files, new_ids=new_ids, paths=paths, reset=env.reset)
                done, outputs = await stream_answer(
                    runner=self._runner, store=self._store, reply=reply, turn=turn, env=env, input_text=input_text
                )
                break
            except ContainerExpired:
                if reply.has_text or attempt == 2:
                    raise
                if not env.reset:
                    log.info("container %s expired mid-turn; starting a new one", env.container_id)
                    env = replace(env, container_id=await self._environments.new_container(thread, files), reset=True)
                else:
                    # A fresh container did not help: the conversation's history still points at the
                    # dead one. Carry the memory over as text into a fresh conversation.
                    log.info("conversation %s refers to a dead container; continuing in a new one", env.conversation_id)
                    conversation_id = await self._environments.fresh_conversation(thread, env.conversation_id)
                    env = replace(env, conversation_id=conversation_id)
        await reply.flush()
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
        await reply.set_status("")
        return done

    async def _container_paths(self, container_id: str, files: Sequence[ThreadFile]) -> dict[str, str]:
        """Where OpenAI put the thread's files in the container (empty when it cannot say)."""
        if not files:
            return {}
        try:
            return await self._workspace.user_file_paths(container_id)
        except OpenAIProblem as err:
            log.warning("could not list files of container %s: %s; assuming /mnt/data/<name>", container_id, err.detail)
            return {}

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
