"""The agent pane and App Home: suggested prompts for a new assistant thread, and the Home tab's how-to
and recent analyses. Each runs on a task owned here, so listeners only hand the event on.

Language of the suggested prompts: the event carries no locale, so the user's Slack locale is read with
`users.info(include_locale=true)` (scope `users:read`): Korean for `ko-*`, English otherwise. When the
locale cannot be read, two prompts in each language are offered. The Home tab is for everyone who opens
it, so it explains in both languages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.domain import ThreadKey, strip_mentions
from bot.errors import BotError
from bot.i18n import LANGUAGES, Language, t
from bot.slack.clients import SlackClients
from bot.tasks import OwnedTasks

log = logging.getLogger(__name__)

# (title key, message key) of each suggested prompt, in the order shown.
PROMPT_KEYS = (
    ("pane.prompt_upload.title", "pane.prompt_upload.message"),
    ("pane.prompt_chart.title", "pane.prompt_chart.message"),
    ("pane.prompt_clean.title", "pane.prompt_clean.message"),
    ("pane.prompt_compare.title", "pane.prompt_compare.message"),
)
RECENT_THREADS = 10
RECENT_QUESTION_CHARS = 80

# team_id, user_id -> the user's recent threads with their first question, newest first.
RecentThreads = Callable[[str, str], Awaitable[list[tuple[ThreadKey, str]]]]


def suggested_prompts(lang: Language | None) -> list[dict[str, str]]:
    """Four prompts in `lang`; with None (language unknown) the first two in Korean and in English."""
    if lang is not None:
        return [{"title": t(title, lang), "message": t(message, lang)} for title, message in PROMPT_KEYS]
    return [
        {"title": t(title, language), "message": t(message, language)}
        for language in LANGUAGES
        for title, message in PROMPT_KEYS[:2]
    ]


def language_of_locale(locale: str | None) -> Language | None:
    """Korean for a "ko-KR" (any "ko") locale, English for any other, None when Slack did not say."""
    if not locale:
        return None
    return "ko" if locale.lower().startswith("ko") else "en"


def home_view(recent: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The Home tab: the how-to in Korean and English, then `recent` (permalink, first question) as links."""
    blocks: list[dict[str, Any]] = []
    for lang in LANGUAGES:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": t("home.title", lang)}})
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": t("home.how_to", lang)}})
    blocks.append({"type": "divider"})
    heading = " · ".join(t("home.recent_title", lang) for lang in LANGUAGES)
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": heading}})
    if recent:
        lines = [f"• <{link}|{_link_text(question)}>" for link, question in recent]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    else:
        none = " / ".join(t("home.recent_none", lang) for lang in LANGUAGES)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": none}]})
    return {"type": "home", "blocks": blocks}


def _link_text(question: str) -> str:
    text = " ".join(strip_mentions(question).split()) or "…"
    if len(text) > RECENT_QUESTION_CHARS:
        text = text[: RECENT_QUESTION_CHARS - 1] + "…"
    # Slack's link syntax: these would end or break the link text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "¦")


class AgentSurface:
    """Answers `assistant_thread_started` and `app_home_opened` in the background; failures are only logged."""

    def __init__(self, clients: SlackClients, *, recent_threads: RecentThreads) -> None:
        self._clients = clients
        self._recent_threads = recent_threads
        self._tasks = OwnedTasks()

    def thread_started(self, *, team_id: str, channel: str, thread_ts: str, user_id: str) -> None:
        """Offer suggested prompts in the new assistant thread, in the user's language; returns at once."""
        self._spawn(self._offer_prompts(team_id, channel, thread_ts, user_id), f"prompts-{channel}-{thread_ts}")

    def home_opened(self, *, team_id: str, user_id: str) -> None:
        """Publish `user_id`'s Home tab; returns at once."""
        self._spawn(self._publish_home(team_id, user_id), f"home-{user_id}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coro, name=name)

    async def _offer_prompts(self, team_id: str, channel: str, thread_ts: str, user_id: str) -> None:
        client = await self._clients.for_team(team_id)
        if client is None:
            log.warning("no prompts in %s/%s: the app is not installed in workspace %s", channel, thread_ts, team_id)
            return
        lang: Language | None = None
        try:
            info = await client.users_info(user=user_id, include_locale=True)
            lang = language_of_locale((info.get("user") or {}).get("locale"))
        except SlackApiError as exc:
            log.info("users.info for %s failed (%s); prompts in both languages", user_id, exc.response.get("error"))
        try:
            await client.assistant_threads_setSuggestedPrompts(
                channel_id=channel,
                thread_ts=thread_ts,
                title=t("pane.prompts_title", lang or "ko") if lang else None,
                prompts=suggested_prompts(lang),
            )
        except SlackApiError as exc:
            log.warning("setSuggestedPrompts failed in %s/%s: %s", channel, thread_ts, exc.response.get("error"))

    async def _publish_home(self, team_id: str, user_id: str) -> None:
        client = await self._clients.for_team(team_id)
        if client is None:
            log.warning("Home tab for %s not published: the app is not installed in workspace %s", user_id, team_id)
            return
        recent: list[tuple[str, str]] = []
        try:
            for thread, question in await self._recent_threads(team_id, user_id):
                try:
                    link = await client.chat_getPermalink(channel=thread.channel, message_ts=thread.thread_ts)
                except SlackApiError as exc:
                    log.info("no permalink for %s: %s", thread, exc.response.get("error"))
                    continue  # the thread is gone, or the bot left the channel
                recent.append((str(link["permalink"]), question))
            await client.views_publish(user_id=user_id, view=home_view(recent))
        except SlackApiError as exc:
            log.warning("Home tab for %s not published: %s", user_id, exc.response.get("error"))
        except BotError as err:  # the database did not answer: the next opening tries again
            log.warning("Home tab for %s not published: %s", user_id, err.detail)

    async def close(self, *, grace_s: float = 2.0) -> None:
        """Let work in flight finish for `grace_s`, then cancel the rest."""
        await self._tasks.close(grace_s=grace_s)
