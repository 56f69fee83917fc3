"""Short replies that belong to no turn (e.g. "nothing is running" after a `stop`, or "not enabled for you
here" shown to one person), sent in the background.

Why a background task and not the listener or a turn: a listener must acknowledge Slack fast and does no
HTTP itself (with `process_before_response=True` the ack waits for it, and a rate-limited post could
wait for minutes); a turn would queue the reply behind the thread's answers, store it and resume it
after a restart, none of which a one-line courtesy reply needs. Each post runs as a task owned here,
awaited or cancelled by `close()`.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot.domain import ThreadKey
from bot.slack.clients import SlackClients
from bot.tasks import OwnedTasks

log = logging.getLogger(__name__)


class ThreadNotices:
    """Posts one-line notices in threads on tasks it owns."""

    def __init__(self, clients: SlackClients) -> None:
        self._clients = clients
        self._tasks = OwnedTasks()

    def post(self, thread: ThreadKey, text: str) -> None:
        """Post `text` in `thread` soon; returns at once. Failures are only logged."""
        self._tasks.spawn(self._post(thread, text), name=f"notice-{thread.channel}-{thread.thread_ts}")

    async def _post(self, thread: ThreadKey, text: str) -> None:
        client = await self._clients.for_team(thread.team_id)
        if client is None:
            log.warning("notice in %s not posted: the app is not installed in workspace %s", thread, thread.team_id)
            return
        try:
            await client.chat_postMessage(channel=thread.channel, thread_ts=thread.thread_ts, markdown_text=text)
        except SlackApiError as exc:
            log.warning("notice in %s not posted: %s", thread, exc.response.get("error"))

    async def show_status(self, thread: ThreadKey, text: str) -> None:
        """Show `text` as the thread's status line now (awaited: it must come before what follows)."""
        client = await self._clients.for_team(thread.team_id)
        if client is None:
            return
        try:
            await client.assistant_threads_setStatus(channel_id=thread.channel, thread_ts=thread.thread_ts, status=text)
        except SlackApiError as exc:
            log.warning("status in %s not shown: %s", thread, exc.response.get("error"))

    def post_ephemeral(
        self, *, team_id: str, channel: str, user_id: str, text: str, thread_ts: str | None = None
    ) -> None:
        """Show `text` to `user_id` only (`chat.postEphemeral`), in `thread_ts` when given; returns at once.

        Failures (e.g. `user_not_in_channel`) are only logged.
        """
        self._tasks.spawn(
            self._post_ephemeral(team_id=team_id, channel=channel, user_id=user_id, text=text, thread_ts=thread_ts),
            name=f"ephemeral-{channel}-{user_id}",
        )

    async def _post_ephemeral(
        self, *, team_id: str, channel: str, user_id: str, text: str, thread_ts: str | None
    ) -> None:
        client = await self._clients.for_team(team_id)
        if client is None:
            log.warning("ephemeral notice in %s not posted: the app is not installed in workspace %s", channel, team_id)
            return
        try:
            # `text`, not `markdown_text`: the method documents only text/blocks (mrkdwn renders in `text`).
            await client.chat_postEphemeral(channel=channel, user=user_id, text=text, thread_ts=thread_ts)
        except SlackApiError as exc:
            log.warning("ephemeral notice to %s in %s not posted: %s", user_id, channel, exc.response.get("error"))

    async def close(self, *, grace_s: float = 2.0) -> None:
        """Let notices in flight finish for `grace_s`, then cancel the rest."""
        await self._tasks.close(grace_s=grace_s)
