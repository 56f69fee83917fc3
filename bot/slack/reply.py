"""Our answer in Slack: thread status, streamed text with a posting fallback, steps, notices and uploads.

Never imports `openai`; it is driven by `conductor.py` with plain text and file bytes.

Steps (one per code-interpreter call) are `task_update` chunks on the answer's stream. The model often
runs code before it writes any text, so the first step opens the answer stream itself (with
`task_display_mode="timeline"`) and the text follows in the same message: a turn with code makes no
more stream calls than one without. Where Slack refuses the chunks (`invalid_chunks`, or the answer is
a posted message, not a stream) steps stay off for the turn and the caller shows the status line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import ThreadKey
from bot.errors import SlackProblem
from bot.slack.render import StreamScrubber, fit_to_message

log = logging.getLogger(__name__)

# chat.appendStream is Tier 4 (100+/min): batch deltas instead of one call per token.
FLUSH_INTERVAL_S = 0.6
# chat.update (the fallback) is Tier 3 (50+/min): edit less often.
UPDATE_INTERVAL_S = 1.5
FLUSH_CHARS = 400
# The plain `text` that goes with blocks is what notifications show.
NOTIFICATION_TEXT_CHARS = 3_000
STREAM_CLOSED_ERRORS = {"message_not_in_streaming_state", "streaming_state_conflict", "message_not_found"}


FEEDBACK_ACTION_ID = "answer_feedback"

# Called with every message ts that carries the answer so far, each time the answer opens a new message.
AnswerMessagesHook = Callable[[Sequence[str]], Awaitable[None]]


def feedback_blocks(*, response_id: str, good_label: str, bad_label: str) -> list[dict[str, Any]]:
    """Helpful / not helpful buttons; each value carries the rating and the OpenAI response id."""
    return [
        {
            "type": "context_actions",
            "elements": [
                {
                    "type": "feedback_buttons",
                    "action_id": FEEDBACK_ACTION_ID,
                    "positive_button": {
                        "text": {"type": "plain_text", "text": good_label},
                        "accessibility_label": good_label,
                        "value": f"good:{response_id}",
                    },
                    "negative_button": {
                        "text": {"type": "plain_text", "text": bad_label},
                        "accessibility_label": bad_label,
                        "value": f"bad:{response_id}",
                    },
                }
            ],
        }
    ]


class ThreadReply:
    """What the bot shows in one thread for one turn. Not safe for concurrent use (one per turn)."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        thread: ThreadKey,
        recipient_user_id: str,
        on_answer_message: AnswerMessagesHook | None = None,
    ) -> None:
        self._client = client
        self._on_answer_message = on_answer_message
        self._thread = thread
        self._recipient = recipient_user_id
        self._scrubber = StreamScrubber()
        self._pending = ""
        self._message_ts: str | None = None  # the message being written
        self._message_text = ""  # what that message shows so far
        self._streaming = False  # True while `_message_ts` is an open chat stream
        self._use_streams = True  # False after chat.startStream was refused: post and update instead
        self._use_steps = True  # False after Slack refused a task_update chunk: status line instead
        self._last_flush = 0.0
        self.answer_ts: list[str] = []  # the messages that carry answer text (not notices), oldest first
        self._delivered_chars = 0

    # ---- status ---------------------------------------------------------------------------------------

    async def set_status(self, status: str) -> None:
        """Show `status` as the thread's "is …" indicator ("" clears it). Failures are only logged."""
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._thread.channel, thread_ts=self._thread.thread_ts, status=status
            )
        except SlackApiError as exc:
            log.warning("setStatus failed in %s: %s", self._thread, exc.response.get("error"))

    async def set_title(self, title: str) -> None:
        """Name the thread in the assistant pane (`assistant.threads.setTitle`; DM threads only, where Slack
        shows titles). Failures are only logged."""
        try:
            await self._client.assistant_threads_setTitle(
                channel_id=self._thread.channel, thread_ts=self._thread.thread_ts, title=title
            )
        except SlackApiError as exc:
            log.info("setTitle failed in %s: %s", self._thread, exc.response.get("error"))

    async def end_session(self) -> None:
        """Move the thread's agent session off "processing" when its stream could not be stopped by us
        (Slack stopped it: the Stop button, or expiry). Failures are only logged."""
        try:
            await self._client.agents_sessions_setStatus(
                channel_id=self._thread.channel, thread_ts=self._thread.thread_ts, status="active"
            )
        except SlackApiError as exc:
            log.info("agents.sessions.setStatus failed in %s: %s", self._thread, exc.response.get("error"))

    # ---- steps ----------------------------------------------------------------------------------------

    async def step(self, step_id: str, title: str, *, status: str) -> bool:
        """Show step `step_id` as `status` (in_progress | complete | error) on the answer stream, opening
        it if needed. Returns False when steps cannot be shown (the caller shows the status line)."""
        if not self._use_steps:
            return False
        chunk = {"type": "task_update", "id": step_id, "title": title, "status": status}
        try:
            if self._message_ts is not None and self._streaming:
                await self._client.chat_appendStream(channel=self._thread.channel, ts=self._message_ts, chunks=[chunk])
                return True
            if self._message_ts is None and self._use_streams:
                response = await self._client.chat_startStream(
                    channel=self._thread.channel,
                    thread_ts=self._thread.thread_ts,
                    recipient_team_id=self._thread.team_id,
                    recipient_user_id=self._recipient,
                    chunks=[chunk],
                    task_display_mode="timeline",
                )
                await self._started(str(response["ts"]), "", streaming=True)
                return True
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            log.info("steps refused in %s (%s); showing the status line instead", self._thread, error)
            if error in STREAM_CLOSED_ERRORS:
                self._streaming = False
        self._use_steps = False
        return False

    # ---- streamed text --------------------------------------------------------------------------------

    @property
    def has_text(self) -> bool:
        return bool(self._message_text or self._pending or self._delivered_chars)

    async def write(self, text: str) -> None:
        """Add answer text; it reaches Slack in batches (the first piece at once)."""
        self._pending += self._scrubber.feed(text)
        interval = FLUSH_INTERVAL_S if self._streaming else UPDATE_INTERVAL_S
        due = time.monotonic() - self._last_flush >= interval
        if self._pending and (self._message_ts is None or due or len(self._pending) >= FLUSH_CHARS):
            await self.flush()

    async def flush(self) -> None:
        """Send buffered text now, continuing in new messages where Slack's size limit requires."""
        if not self._pending.strip() and self._message_ts is None:
            return  # Slack refuses a message of only white space: wait for real text
        text, self._pending = self._pending, ""
        self._last_flush = time.monotonic()
        head, new_messages = fit_to_message(self._message_text, text)
        try:
            if head:
                await self._send(head)
            for piece in new_messages:
                await self._close_message()
                await self._send(piece)
        except SlackProblem:
            log.error("answer text Slack did not take in %s (%d chars): %s", self._thread, len(text), text)
            raise

    async def _send(self, piece: str) -> None:
        if self._message_ts is None:
            await self._open_message(piece)
        elif self._streaming:
            await self._append(piece)
        else:
            await self._update(self._message_text + piece)
        self._delivered_chars += len(piece)

    async def _open_message(self, text: str) -> None:
        if self._use_streams:
            try:
                response = await self._client.chat_startStream(
                    channel=self._thread.channel,
                    thread_ts=self._thread.thread_ts,
                    recipient_team_id=self._thread.team_id,
                    recipient_user_id=self._recipient,
                    markdown_text=text,
                )
                await self._started(str(response["ts"]), text, streaming=True)
                return
            except SlackApiError as exc:
                log.warning(
                    "chat.startStream refused in %s (%s); posting instead", self._thread, exc.response.get("error")
                )
                self._use_streams = False
        ts = await self._post(text)
        await self._started(ts, text, streaming=False)

    async def _started(self, ts: str, text: str, *, streaming: bool) -> None:
        self._message_ts, self._message_text, self._streaming = ts, text, streaming
        self.answer_ts.append(ts)
        if self._on_answer_message is not None:
            await self._on_answer_message(tuple(self.answer_ts))

    async def _append(self, piece: str) -> None:
        assert self._message_ts is not None
        try:
            await self._client.chat_appendStream(channel=self._thread.channel, ts=self._message_ts, markdown_text=piece)
            self._message_text += piece
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error not in STREAM_CLOSED_ERRORS:
                raise SlackProblem(f"chat.appendStream: {error}", slack_error=error) from exc
            # Slack closed the stream (it expires after a few minutes): show the text by editing,
            # and carry on in a new message.
            log.info("stream %s closed by Slack (%s); continuing without it", self._message_ts, error)
            self._streaming = False
            await self._update(self._message_text + piece)

    async def _update(self, text: str) -> None:
        assert self._message_ts is not None
        try:
            await self._client.chat_update(channel=self._thread.channel, ts=self._message_ts, markdown_text=text)
            self._message_text = text
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            log.warning("chat.update failed (%s); posting the rest as a new message", error)
            rest = text[len(self._message_text) :]
            self._message_ts = None
            self._message_text = ""
            if rest:
                await self._started(await self._post(rest), rest, streaming=False)

    async def _close_message(self, blocks: list[dict[str, Any]] | None = None) -> None:
        if self._message_ts is not None and self._streaming:
            try:
                await self._client.chat_stopStream(channel=self._thread.channel, ts=self._message_ts, blocks=blocks)
                self._message_ts, self._message_text, self._streaming = None, "", False
                return
            except SlackApiError as exc:
                error = exc.response.get("error")
                if blocks and error not in STREAM_CLOSED_ERRORS:
                    # Buttons refused (e.g. invalid_blocks): the stream must still be stopped.
                    log.warning("chat.stopStream refused the buttons (%s); stopping without them", error)
                    await self._close_message()
                    return
                # The text is already shown; a stream Slack closed itself (the Stop button, or it
                # expired after a few minutes) needs no stop, and its buttons are added by editing,
                # below. Its agent session still says "processing": end that.
                log.info("chat.stopStream failed (%s) for %s", error, self._message_ts)
                self._streaming = False
                if error in STREAM_CLOSED_ERRORS:
                    await self.end_session()
        if self._message_ts is not None and not self._streaming and blocks:
            # A posted (not streamed) answer: `markdown_text` cannot carry blocks, so the text moves
            # into a markdown block above them.
            try:
                await self._client.chat_update(
                    channel=self._thread.channel,
                    ts=self._message_ts,
                    text=self._message_text[:NOTIFICATION_TEXT_CHARS],
                    blocks=[{"type": "markdown", "text": self._message_text}, *blocks],
                )
            except SlackApiError as exc:
                log.info("could not add buttons to %s: %s", self._message_ts, exc.response.get("error"))
        self._message_ts, self._message_text, self._streaming = None, "", False

    async def finish(self, *, blocks: list[dict[str, Any]] | None = None) -> None:
        """Flush the rest of the text and close the answer message, with `blocks` under it if streamed."""
        self._pending += self._scrubber.flush()
        await self.flush()
        self._pending = ""
        await self._close_message(blocks)

    # ---- separate messages -----------------------------------------------------------------------------

    async def notice(self, text: str) -> None:
        """Post `text` as its own message in the thread (errors, file problems)."""
        await self._post(text)

    async def _post(self, text: str) -> str:
        try:
            response = await self._client.chat_postMessage(
                channel=self._thread.channel, thread_ts=self._thread.thread_ts, markdown_text=text
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            raise SlackProblem(f"chat.postMessage: {error}", slack_error=error) from exc
        return str(response["ts"])

    async def post_blocks(self, *, text: str, blocks: list[dict[str, Any]]) -> str:
        """Post `blocks` (e.g. native charts) with the `text` fallback as their own message, below the answer
        so far (later answer text continues under it); returns its ts. Raises `SlackProblem` (the Slack
        error in `slack_error`, e.g. invalid_blocks)."""
        self._pending += self._scrubber.flush()
        await self.flush()
        await self._close_message()
        try:
            response = await self._client.chat_postMessage(
                channel=self._thread.channel, thread_ts=self._thread.thread_ts, text=text, blocks=blocks
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            raise SlackProblem(f"chat.postMessage: {error}", slack_error=error) from exc
        return str(response["ts"])

    async def upload(self, *, filename: str, data: bytes, title: str) -> None:
        """Share a file in the thread."""
        try:
            await self._client.files_upload_v2(
                channel=self._thread.channel,
                thread_ts=self._thread.thread_ts,
                content=data,
                filename=filename,
                title=title,
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            raise SlackProblem(f"files_upload_v2 {filename}: {error}", slack_error=error) from exc

    async def mark_interrupted(self, message_ts: Sequence[str], note: str) -> None:
        """Replace a partial answer that a restart cut short: its first message becomes `note`, the others go.

        The turn is answered again in full afterwards, so the partial text would only duplicate it.
        Best effort: a message that is already gone or cannot be changed is logged and skipped.
        """
        for index, ts in enumerate(message_ts):
            try:
                await self._client.chat_stopStream(channel=self._thread.channel, ts=ts)
            except SlackApiError as exc:
                log.debug("stopStream on interrupted %s: %s", ts, exc.response.get("error"))
            try:
                if index == 0:
                    await self._client.chat_update(channel=self._thread.channel, ts=ts, markdown_text=note)
                else:
                    await self._client.chat_delete(channel=self._thread.channel, ts=ts)
            except SlackApiError as exc:
                log.info("could not replace interrupted answer message %s: %s", ts, exc.response.get("error"))
