"""Our answer in Slack: thread status, streamed text with a posting fallback, steps, notices and uploads.

Never imports `openai`; it is driven by `conductor.py` with plain text and file bytes.

Steps (one per code-interpreter call) are `task_update` chunks on the answer's stream. The model often
runs code before it writes any text, so the first step opens the answer stream itself (with
`task_display_mode="timeline"`) and the text follows in the same message: a turn with code makes no
more stream calls than one without. Where Slack refuses the chunks (`invalid_chunks`, or the answer is
a posted message, not a stream) steps stay off for the turn and the caller shows the status line.

Slack calls per answer (`chat.appendStream` is Tier 4, `chat.update` Tier 3, `setStatus` rate-limited
too): the turn's first text goes out at once (it opens the stream); after it, text is held until
`STREAM_FLUSH_CHARS` have gathered (one write per 600 characters at most), and what is held rides on the
calls the answer makes anyway: a step's `task_update` chunk and the closing `chat.stopStream` (with the
feedback buttons). A status is sent only when it changes; Slack clears it by itself when the app replies
(a new message or stream), so no clearing call follows a reply. slack_sdk's `chat_stream()` helper
buffers the same way, but its first text waits for a full buffer (256 characters by default), and it has
no posting fallback, no splitting at Slack's message limit and no recovery from a stream Slack closed;
hence this module's own buffering.
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

# After the first text, at most one text write per this many streamed characters: chat.appendStream is
# Tier 4 (100+/min), chat.update (the fallback, which resends the whole message) Tier 3 (50+/min).
STREAM_FLUSH_CHARS = 600
UPDATE_FLUSH_CHARS = 1_200
# Slack clears a status by itself after 2 minutes: the same status is sent again once it is this old.
STATUS_FRESH_S = 100.0
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
        self._pending = ""  # answer text not yet sent
        self._message_ts: str | None = None  # the message being written
        self._message_text = ""  # what that message shows so far
        self._streaming = False  # True while `_message_ts` is an open chat stream
        self._use_streams = True  # False after chat.startStream was refused: post and update instead
        self._use_steps = True  # False after Slack refused a task_update chunk: status line instead
        self._text_shown = False  # some answer text reached Slack this turn
        self._status: str | None = None  # the status Slack shows, as far as we know (None: unknown)
        self._status_at = 0.0
        self.answer_ts: list[str] = []  # the messages that carry answer text (not notices), oldest first

    # ---- status ---------------------------------------------------------------------------------------

    async def set_status(self, status: str) -> None:
        """Show `status` as the thread's "is …" indicator ("" clears it). Failures are only logged.

        No call is made when Slack already shows `status`: the same status sent less than `STATUS_FRESH_S`
        ago, or "" when Slack cleared the status itself because the app replied in the thread since.
        """
        now = time.monotonic()
        if status == self._status and (not status or now - self._status_at < STATUS_FRESH_S):
            return
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._thread.channel, thread_ts=self._thread.thread_ts, status=status
            )
            self._status, self._status_at = status, now
        except SlackApiError as exc:
            log.warning("setStatus failed in %s: %s", self._thread, exc.response.get("error"))
            self._status = None

    def _replied(self) -> None:
        """A new message of the app in the thread: Slack has cleared the status."""
        self._status = ""

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
        it if needed; text held back so far goes in the same call, above the step. Returns False when
        steps cannot be shown (the caller shows the status line, and any held text is still held)."""
        if not self._use_steps:
            return False
        if self._pending and fit_to_message(self._message_text, self._pending)[1]:
            await self.flush()  # the held text needs a new message: send it the usual way first
        task = {"type": "task_update", "id": step_id, "title": title, "status": status}
        text = self._pending if self._message_ts is not None or self._pending.strip() else ""
        chunks = [*([{"type": "markdown_text", "text": text}] if text else []), task]
        try:
            if self._message_ts is not None and self._streaming:
                await self._client.chat_appendStream(channel=self._thread.channel, ts=self._message_ts, chunks=chunks)
                self._message_text += text
                self._took(text)
                return True
            if self._message_ts is None and self._use_streams:
                response = await self._client.chat_startStream(
                    channel=self._thread.channel,
                    thread_ts=self._thread.thread_ts,
                    recipient_team_id=self._thread.team_id,
                    recipient_user_id=self._recipient,
                    chunks=chunks,
                    task_display_mode="timeline",
                )
                self._took(text)
                await self._started(str(response["ts"]), text, streaming=True)
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
        return self._text_shown or bool(self._message_text or self._pending)

    async def write(self, text: str) -> None:
        """Add answer text. The turn's first text reaches Slack at once; after it, text goes out once
        `STREAM_FLUSH_CHARS` have gathered (`UPDATE_FLUSH_CHARS` when editing a posted message), or
        earlier with the next call the answer makes anyway (a step, the end of the message)."""
        self._pending += self._scrubber.feed(text)
        if not self._pending.strip():
            return
        posted = self._message_ts is not None and not self._streaming
        due = len(self._pending) >= (UPDATE_FLUSH_CHARS if posted else STREAM_FLUSH_CHARS)
        if not self._text_shown or due:
            await self.flush()

    async def flush(self) -> None:
        """Send held text now, continuing in new messages where Slack's size limit requires."""
        if not self._pending or (not self._pending.strip() and self._message_ts is None):
            return  # Slack refuses a message of only white space: wait for real text
        text, self._pending = self._pending, ""
        await self._put(text, close=False)

    async def _put(self, text: str, *, close: bool, blocks: list[dict[str, Any]] | None = None) -> None:
        """Show `text`, continuing in new messages where Slack's size limit requires (a full message ends with
        its last text in the closing call); with `close`, the last message is closed too, `blocks` under it."""
        head, new_messages = fit_to_message(self._message_text, text)
        *full, last = [head, *new_messages]
        try:
            for piece in full:
                await self._end_with(piece)
            if close:
                await self._end_with(last, blocks)
            elif last:
                await self._send(last)
        except SlackProblem:
            # Only the length: an answer may quote the user's file, and file contents are never logged.
            log.error("answer text Slack did not take in %s (%d chars)", self._thread, len(text))
            raise

    def _took(self, text: str) -> None:
        """`text`, held so far, is now shown."""
        if text:
            self._pending = self._pending[len(text) :]
            self._text_shown = True

    async def _send(self, piece: str) -> None:
        if self._message_ts is None:
            await self._open_message(piece)
        elif self._streaming:
            await self._append(piece)
        else:
            await self._update(self._message_text + piece)
        if piece:
            self._text_shown = True

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
        self._replied()
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

    async def _close_message(self, blocks: list[dict[str, Any]] | None = None, *, text: str = "") -> None:
        """End the open message with `text` (held text that fits in it) and `blocks` under it: in the
        `chat.stopStream` call for a stream, by one edit for a posted message or a stream Slack closed."""
        if self._message_ts is not None and self._streaming:
            try:
                await self._client.chat_stopStream(
                    channel=self._thread.channel, ts=self._message_ts, markdown_text=text or None, blocks=blocks
                )
                if text:
                    self._text_shown = True
                self._message_ts, self._message_text, self._streaming = None, "", False
                return
            except SlackApiError as exc:
                error = exc.response.get("error")
                if blocks and error not in STREAM_CLOSED_ERRORS:
                    # Buttons refused (e.g. invalid_blocks): the stream must still be stopped, with its text.
                    log.warning("chat.stopStream refused the buttons (%s); stopping without them", error)
                    await self._close_message(text=text)
                    return
                # A stream Slack closed itself (the Stop button, or it expired after a few minutes) needs
                # no stop; its last text and buttons are added by editing, below. Its agent session still
                # says "processing": end that.
                log.info("chat.stopStream failed (%s) for %s", error, self._message_ts)
                self._streaming = False
                if error in STREAM_CLOSED_ERRORS:
                    await self.end_session()
        if self._message_ts is not None and not self._streaming and blocks:
            # A posted (not streamed) answer: `markdown_text` cannot carry blocks, so the text moves
            # into a markdown block above them.
            full = self._message_text + text
            try:
                await self._client.chat_update(
                    channel=self._thread.channel,
                    ts=self._message_ts,
                    text=full[:NOTIFICATION_TEXT_CHARS],
                    blocks=[{"type": "markdown", "text": full}, *blocks],
                )
                self._message_text = full
                if text:
                    self._text_shown = True
                text = ""
            except SlackApiError as exc:
                log.info("could not add buttons to %s: %s", self._message_ts, exc.response.get("error"))
        if self._message_ts is not None and not self._streaming and text:
            await self._update(self._message_text + text)
            self._text_shown = True
        self._message_ts, self._message_text, self._streaming = None, "", False

    async def finish(self, *, blocks: list[dict[str, Any]] | None = None) -> None:
        """Send the rest of the text and close the answer message, with `blocks` under it; the last text
        goes in the closing call (`chat.stopStream`)."""
        self._pending += self._scrubber.flush()
        text, self._pending = self._pending, ""
        await self._put(text, close=True, blocks=blocks)

    async def _end_with(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """Close the open message with `text` in its closing call; with none open, `text` opens one first."""
        if self._message_ts is None:
            if not text.strip():
                return  # nothing shown, nothing to close
            await self._send(text)
            text = ""
        await self._close_message(blocks, text=text)

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
        self._replied()
        return str(response["ts"])

    async def post_blocks(self, *, text: str, blocks: list[dict[str, Any]]) -> str:
        """Post `blocks` (e.g. native charts) with the `text` fallback as their own message, below the answer
        so far (later answer text continues under it); returns its ts. Raises `SlackProblem` (the Slack
        error in `slack_error`, e.g. invalid_blocks)."""
        await self.finish()
        try:
            response = await self._client.chat_postMessage(
                channel=self._thread.channel, thread_ts=self._thread.thread_ts, text=text, blocks=blocks
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            raise SlackProblem(f"chat.postMessage: {error}", slack_error=error) from exc
        self._replied()
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
