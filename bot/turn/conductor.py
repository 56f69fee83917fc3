"""Runs one turn from start to finish: files in, OpenAI response streamed, answer and outputs out.

This is the one place where a `BotError` becomes a message in the thread (`_report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis.turns import TurnRunner
from bot.analysis.workspace import Workspace
from bot.domain import Session, SlackFile, ThreadFile, ThreadKey, Turn
from bot.errors import BotError, ContainerExpired, FileProblem, OpenAIProblem, ThreadFileLimit
from bot.events import FileCited, ImageOutput, Progress, TextDelta, TurnDone
from bot.i18n import Language, t
from bot.slack.render import sandbox_link_labels
from bot.slack.reply import ThreadReply, feedback_blocks
from bot.store import Store
from bot.turn.intake import Intake, describe_files

log = logging.getLogger(__name__)

# No status for writing the answer: the streamed text itself shows it (and a status call there
# would delay the first visible text by a round trip).
PHASE_STATUS = {
    "reasoning": "status.thinking",
    "running_python": "status.running_python",
    "drawing_chart": "status.drawing_chart",
}


class _Stopped(Exception):
    """The user stopped the turn."""


@dataclass(frozen=True)
class ThreadLimits:
    """How much one thread may hold."""

    max_files: int = 20
    max_bytes: int = 2048 * 1_048_576


# A turn that was started this many times and never finished is not tried again (it may be what
# crashes the process).
MAX_TURN_ATTEMPTS = 3
# Files shared in a thread before the bot was first asked there are looked up this far (200 a page).
MAX_HISTORY_PAGES = 5


@dataclass
class _Outputs:
    """Files the response produced, in the order the answer mentions them."""

    cited: list[FileCited] = field(default_factory=list)
    images: list[ImageOutput] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # the raw answer, for file titles


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
        self._limits = limits or ThreadLimits()
        self._store = store
        self._slack = slack
        self._workspace = workspace
        self._runner = runner
        self._intake = intake

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
        new_ids = await self._bring_files(turn, session, reply, lang)
        conversation_id = session.conversation_id
        if conversation_id is None:
            conversation_id = await self._workspace.create_conversation(thread)
            await self._store.update_session(thread, conversation_id=conversation_id)
        files = await self._store.thread_files(thread)
        container_id, reset = await self._ensure_container(session, files, new_ids)
        for attempt in range(3):
            try:
                done, outputs = await self._stream(turn, reply, conversation_id, container_id, files, new_ids, reset)
                break
            except ContainerExpired:
                if reply.has_text or attempt == 2:
                    raise
                if not reset:
                    log.info("container %s expired mid-turn; starting a new one", container_id)
                    container_id, reset = await self._new_container(thread, files), True
                else:
                    # A fresh container did not help: the conversation's history still points at the
                    # dead one. Carry the memory over as text into a fresh conversation.
                    log.info("conversation %s refers to a dead container; continuing in a new one", conversation_id)
                    conversation_id = await self._fresh_conversation(thread, conversation_id)
        await reply.flush()
        await self._deliver_outputs(reply, lang, done, outputs)
        if not reply.has_text and not outputs.cited and not outputs.images:
            await reply.write(t("turn.empty_answer", lang))
        await reply.finish(
            blocks=feedback_blocks(
                response_id=done.response_id, good_label=t("feedback.good", lang), bad_label=t("feedback.bad", lang)
            )
        )
        if done.incomplete_reason:
            await reply.notice(t("openai.incomplete", lang, reason=done.incomplete_reason))
        await reply.set_status("")
        return done

    async def _bring_files(self, turn: Turn, session: Session, reply: ThreadReply, lang: Language) -> set[str]:
        """Upload the turn's new files (and, once, those shared in the thread earlier); report failures.

        Returns the Slack ids of files that are new in the container this turn.
        """
        candidates: list[SlackFile] = list(turn.files)
        if turn.is_thread_reply and not session.root_checked:
            candidates = [*await self._earlier_thread_files(turn.thread, before_ts=turn.ts), *candidates]
            await self._store.update_session(turn.thread, root_checked=True)
        existing = await self._store.thread_files(turn.thread)
        known_ids = {f.slack_file_id for f in existing}
        by_digest = {f.sha256: f for f in existing if f.sha256}
        uploaded = {f.openai_file_id: f.size_bytes for f in existing}  # duplicates share one upload
        count, total_bytes = len(uploaded), sum(uploaded.values())
        new_ids: set[str] = set()
        for file in candidates:
            if file.id in known_ids:
                continue
            known_ids.add(file.id)
            await reply.set_status(t("status.reading_files", lang, filename=file.name))
            try:
                if count >= self._limits.max_files or total_bytes + (file.size or 0) > self._limits.max_bytes:
                    raise ThreadFileLimit(
                        file.name,
                        f"{count} files, {total_bytes} bytes in thread",
                        max_files=str(self._limits.max_files),
                        max_mb=str(self._limits.max_bytes // 1_048_576),
                    )
                brought, duplicate = await self._intake.bring(file, known=by_digest)
            except FileProblem as problem:
                log.warning("file %s (%s) refused: %s", file.id, problem.filename, problem.detail)
                await reply.notice(t(problem.message_key, lang, **problem.params))
                continue
            await self._store.add_thread_file(turn.thread, brought)
            if not duplicate:
                new_ids.add(file.id)
                by_digest[brought.sha256] = brought
                count += 1
                total_bytes += brought.size_bytes
        return new_ids

    async def _earlier_thread_files(self, thread: ThreadKey, *, before_ts: str) -> list[SlackFile]:
        """Files people shared in the thread (root first) before the bot was asked there."""
        files: list[SlackFile] = []
        cursor: str | None = None
        for _page in range(MAX_HISTORY_PAGES):
            try:
                response = await self._slack.conversations_replies(
                    channel=thread.channel, ts=thread.thread_ts, limit=200, cursor=cursor
                )
            except SlackApiError as exc:
                log.warning("conversations.replies failed for %s: %s", thread, exc.response.get("error"))
                break
            for message in response.get("messages") or []:
                if float(message.get("ts", "0")) >= float(before_ts):
                    return files
                if message.get("bot_id") or message.get("subtype") not in (None, "file_share", "thread_broadcast"):
                    continue
                files.extend(SlackFile.from_slack(f) for f in message.get("files") or [] if f.get("id"))
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or not cursor:
                break
        return files

    async def _ensure_container(
        self, session: Session, files: Sequence[ThreadFile], new_ids: set[str]
    ) -> tuple[str, bool]:
        """The thread's live container with all its files, and whether it had to be replaced."""
        if session.container_id and await self._workspace.live_container(session.container_id):
            for file in files:
                if file.slack_file_id in new_ids:
                    await self._workspace.add_file_to_container(session.container_id, file.openai_file_id)
            return session.container_id, False
        container_id = await self._new_container(session.thread, files)
        return container_id, session.container_id is not None

    async def _fresh_conversation(self, thread: ThreadKey, old_conversation_id: str) -> str:
        transcript = await self._workspace.transcript(old_conversation_id)
        seed = (
            "This Slack thread continues from an earlier conversation whose analysis environment expired. "
            f"The latest messages were:\n\n{transcript}"
            if transcript
            else None
        )
        conversation_id = await self._workspace.create_conversation(thread, seed=seed)
        await self._store.update_session(thread, conversation_id=conversation_id)
        return conversation_id

    async def _new_container(self, thread: ThreadKey, files: Sequence[ThreadFile]) -> str:
        file_ids = list(dict.fromkeys(f.openai_file_id for f in files))  # a re-shared file is uploaded once
        container_id = await self._workspace.create_container(thread, file_ids)
        await self._store.update_session(thread, container_id=container_id)
        return container_id

    async def _stream(
        self,
        turn: Turn,
        reply: ThreadReply,
        conversation_id: str,
        container_id: str,
        files: Sequence[ThreadFile],
        new_ids: set[str],
        reset: bool,
    ) -> tuple[TurnDone, _Outputs]:
        paths: dict[str, str] = {}
        if files:
            try:
                paths = await self._workspace.user_file_paths(container_id)
            except OpenAIProblem as err:
                log.warning(
                    "could not list files of container %s: %s; assuming /mnt/data/<name>", container_id, err.detail
                )
        parts = [describe_files(list(files), new_ids=new_ids, paths=paths)]
        if reset:
            parts.append(
                "Note: the Python environment was restarted since the last turn; variables and files "
                "you created earlier are gone. Reload the data from the paths above."
            )
        parts.append(f"Question from the Slack user:\n{turn.question or '(no text; look at the new files)'}")
        outputs = _Outputs()
        lang = turn.language
        stream = self._runner.stream(
            conversation_id=conversation_id,
            container_id=container_id,
            input_text="\n\n".join(parts),
            metadata={"slack_channel": turn.thread.channel, "slack_ts": turn.ts},
        )
        saved_reply_ts = False
        # aclosing: a stop or shutdown closes the HTTP stream at once, which ends the response at OpenAI.
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    outputs.text.append(event.text)
                    await reply.write(event.text)
                    if reply.first_ts and not saved_reply_ts:
                        await self._store.set_reply_ts(turn.id, reply.first_ts)
                        saved_reply_ts = True
                elif isinstance(event, Progress):
                    await reply.flush()
                    await reply.set_status(t(PHASE_STATUS[event.phase], lang))
                elif isinstance(event, FileCited):
                    outputs.cited.append(event)
                elif isinstance(event, ImageOutput):
                    outputs.images.append(event)
                elif isinstance(event, TurnDone):
                    return event, outputs
        raise BotError("stream ended without TurnDone")

    async def _deliver_outputs(self, reply: ThreadReply, lang: Language, done: TurnDone, outputs: _Outputs) -> None:
        """Upload every file and image the model produced this turn, once, cited ones first."""
        # Only containers where code ran this turn can hold new files: no listing call otherwise.
        containers = list(dict.fromkeys([*done.container_ids, *(c.container_id for c in outputs.cited)]))
        ordered: list[tuple[str, str, str]] = [(c.container_id, c.file_id, c.filename) for c in outputs.cited]
        for cid in containers:
            try:
                listed = await self._workspace.generated_files(cid)
            except OpenAIProblem as err:
                # The answer stands; the cited files (if any) are still delivered below.
                log.warning("could not list files of container %s: %s (request %s)", cid, err.detail, err.request_id)
                continue
            ordered.extend((g.container_id, g.file_id, g.filename) for g in listed)
        titles = sandbox_link_labels("".join(outputs.text))
        seen_hashes: set[str] = set()
        if ordered or outputs.images:
            await reply.set_status(t("status.uploading", lang))
        for cid, file_id, filename in dict.fromkeys(ordered):
            if not await self._store.claim_output(cid, file_id):
                continue
            try:
                data = await self._workspace.download(cid, file_id)
                await reply.upload(filename=filename, data=data, title=titles.get(filename, filename))
            except BotError:
                await self._store.release_output(cid, file_id)
                raise
            seen_hashes.add(hashlib.sha256(data).hexdigest())
        for index, image in enumerate(outputs.images, start=1):
            digest = hashlib.sha256(image.data).hexdigest()
            if digest in seen_hashes or not await self._store.claim_output(image.container_id, f"image:{digest}"):
                continue
            seen_hashes.add(digest)
            await reply.upload(filename=f"chart-{index}.png", data=image.data, title=f"chart-{index}.png")

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
