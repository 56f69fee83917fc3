"""Reading a thread's earlier messages from Slack (`conversations.replies`)."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import SharedFile, SlackFile, ThreadKey

log = logging.getLogger(__name__)

# Files shared in a thread before the bot was first asked there are looked up this far (200 a page).
MAX_HISTORY_PAGES = 5
# Messages whose files count as the user's: plain posts, file shares and replies also sent to the channel.
_USER_SUBTYPES = (None, "file_share", "thread_broadcast")


async def earlier_thread_files(client: AsyncWebClient, thread: ThreadKey, *, before_ts: str) -> list[SharedFile]:
    """Files people shared in `thread` (root first) before the message at `before_ts`, with who shared
    each and in which message.

    A Slack error ends the lookup with what was found so far (logged, never raised).
    """
    files: list[SharedFile] = []
    cursor: str | None = None
    for _page in range(MAX_HISTORY_PAGES):
        try:
            response = await client.conversations_replies(
                channel=thread.channel, ts=thread.thread_ts, limit=200, cursor=cursor
            )
        except SlackApiError as exc:
            log.warning("conversations.replies failed for %s: %s", thread, exc.response.get("error"))
            break
        for message in response.get("messages") or []:
            if float(message.get("ts", "0")) >= float(before_ts):
                return files
            if message.get("bot_id") or message.get("subtype") not in _USER_SUBTYPES:
                continue
            files.extend(
                SharedFile(SlackFile.from_slack(f), message_ts=str(message["ts"]), user_id=str(message.get("user", "")))
                for f in message.get("files") or []
                if f.get("id")
            )
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not response.get("has_more") or not cursor:
            break
    return files
