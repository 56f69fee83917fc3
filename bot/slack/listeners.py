"""Slack events -> is it ours? -> may this person ask? -> a recorded turn handed to the thread's queue.

No API calls here: a refused person's "not enabled for you here" is posted on a background task, and so
are the agent pane's suggested prompts and the Home tab (`bot.slack.home`).

Stop has one path: a reply of only "stop" (or 중지, …) and the native Stop button (`agent_session_stopped`)
both call `scheduler.stop(thread)`; the turn then ends at OpenAI and says so (see the conductor).

Both `app_mention` and `message` events arrive for a mention in a channel; the store records each
(team, channel, ts) once, so the first delivery wins and the rest (and Slack's retries) are dropped.
A turn is in the database before Slack is acknowledged (the app runs with `process_before_response=True`,
and `bot.slack.transport`, which calls `UserMessages` for message deliveries before Bolt, acks after it
returns): an acknowledged message is never lost, even if the process dies right after.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from bot.config import AccessPolicy
from bot.domain import Incoming, SlackFile, ThreadKey, mentions, strip_mentions
from bot.governance.access import FollowUp, allowed, follow_up_rule, is_question
from bot.i18n import Language, detect_language, t
from bot.slack.home import AgentSurface
from bot.slack.notices import ThreadNotices
from bot.slack.reply import FEEDBACK_ACTION_ID
from bot.store import Store
from bot.turn.scheduler import TurnScheduler

log = logging.getLogger(__name__)

# Message subtypes that are a person saying something; everything else (edits, deletions, joins,
# bot_message, …) is ignored.
USER_SUBTYPES = {None, "file_share", "thread_broadcast"}
# A reply that is only one of these stops the thread's running analysis.
STOP_WORDS = {"stop", "cancel", "중지", "그만", "멈춰", "취소", "스톱"}
# A message that is only one of these deletes the thread's data (see `bot.governance.forget`).
FORGET_WORDS = {"forget", "잊어줘", "잊어 줘", "잊어버려"}
# Stop messages already handled (a mention arrives twice, and Slack redelivers), newest last.
REMEMBERED_STOPS = 1_000


def classify(event: dict[str, Any], *, team_id: str, bot_user_id: str | None) -> Incoming | None:
    """Decide whether an `app_mention` or `message` event is a user message for the bot.

    Returns None for everything the bot ignores: edits, deletions and system subtypes, other bots,
    the bot itself, channel messages that neither mention the bot nor reply in a thread, and thread
    replies that mention someone else but not the bot.
    `starts_session` is False for thread replies without a mention: those count only in threads
    where the bot already has a session.
    """
    if event.get("subtype") not in USER_SUBTYPES or event.get("edited") or event.get("hidden"):
        return None
    user = event.get("user")
    if not user or event.get("bot_id") or event.get("bot_profile") or user == bot_user_id:
        return None
    channel = event.get("channel")
    ts = event.get("ts")
    if not channel or not ts:
        return None
    text = str(event.get("text") or "")
    thread_ts = event.get("thread_ts")
    is_reply = bool(thread_ts) and thread_ts != ts
    is_dm = event.get("channel_type") == "im" or str(channel).startswith("D")
    addressed = event.get("type") == "app_mention" or (bot_user_id is not None and mentions(text, bot_user_id))
    if not (is_dm or addressed or is_reply):
        return None
    if is_reply and not addressed and not is_dm and strip_mentions(text) != text.strip():
        return None  # a reply addressed to someone else (`@Jimin, look`) is not a question for the bot
    return Incoming(
        thread=ThreadKey(team_id, str(channel), str(thread_ts if is_reply else ts)),
        ts=str(ts),
        user_id=str(user),
        text=text,
        files=tuple(SlackFile.from_slack(f) for f in event.get("files") or [] if f.get("id")),
        is_thread_reply=is_reply,
        starts_session=is_dm or addressed,
        is_dm=is_dm,
    )


def is_stop_request(incoming: Incoming) -> bool:
    """True for a message that only says "stop" (or 중지, 그만, …), with or without a mention."""
    words = strip_mentions(incoming.text).strip(".!。 ").lower()
    return words in STOP_WORDS


def is_forget_request(incoming: Incoming) -> bool:
    """True for a message that only says "forget" (or 잊어줘), with or without a mention."""
    words = strip_mentions(incoming.text).strip(".!。 ").lower()
    return words in FORGET_WORDS


# forget(thread, language, addressed): starts a forget and returns at once.
ForgetRequest = Callable[[ThreadKey, Language, bool], None]
# stop_elsewhere(thread): asks the other replicas to stop the thread's turn; False if none is unfinished.
StopElsewhere = Callable[[ThreadKey], Awaitable[bool]]


def refusal_text(incoming: Incoming, policy: AccessPolicy) -> str:
    """The "not enabled for you here" notice in the message's language, with `ADMIN_CONTACT` when set."""
    lang = detect_language(incoming.text)
    text = t("access.refused", lang)
    if policy.admin_contact:
        text += " " + t("access.admin_contact", lang, contact=policy.admin_contact)
    return text


# uninstalled(team_id, why): starts deleting a workspace's installation and data and returns at once.
UninstallRequest = Callable[[str, str], None]


class UserMessages(Protocol):
    """Takes an `app_mention` or `message` event of workspace `team_id` (whose bot user is `bot_user_id`) and
    returns once it is handled: recorded as a turn and queued, or stopped, forgotten, refused or ignored.

    Called by Bolt's listeners, and by `bot.slack.transport` for deliveries it takes before Bolt.
    """

    async def __call__(self, event: dict[str, Any], *, team_id: str, bot_user_id: str | None) -> None: ...


def register(
    app: AsyncApp,
    *,
    store: Store,
    scheduler: TurnScheduler,
    notices: ThreadNotices,
    forget: ForgetRequest | None = None,
    access: AccessPolicy | None = None,
    uninstalled: UninstallRequest | None = None,
    stop_elsewhere: StopElsewhere | None = None,
    surface: AgentSurface | None = None,
) -> UserMessages:
    """All of the bot's Slack entry points; `access` (default: everyone, any follow-up) decides who may ask;
    `surface` answers the agent pane and the Home tab. Returns what the message listeners call, for a
    transport that takes message deliveries itself."""
    policy = access or AccessPolicy()
    handled_stops: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def first_delivery(incoming: Incoming) -> bool:
        key = (incoming.thread.team_id, incoming.thread.channel, incoming.ts)
        if key in handled_stops:
            return False  # the other delivery of the same message
        handled_stops[key] = None
        if len(handled_stops) > REMEMBERED_STOPS:
            handled_stops.popitem(last=False)
        return True

    async def stop(thread: ThreadKey, *, nothing_running: Language | None) -> None:
        """Stop the thread's running turn; with nothing running, say so in `nothing_running` (None: quietly)."""
        if scheduler.stop(thread):
            log.info("stop requested in %s", thread)
            return
        if stop_elsewhere is not None and await stop_elsewhere(thread):
            log.info("stop requested in %s, passed on to the replica running it", thread)
            return
        if nothing_running is None or await store.session(thread) is None:
            return  # not a thread of ours: the word was not addressed to the bot
        log.info("stop requested in %s, nothing running", thread)
        notices.post(thread, t("turn.nothing_to_stop", nothing_running))

    async def on_stop(incoming: Incoming) -> None:
        if first_delivery(incoming):
            await stop(incoming.thread, nothing_running=detect_language(incoming.text))

    async def on_stop_button(event: dict[str, Any], context: AsyncBoltContext, body: dict[str, Any]) -> None:
        """The native Stop button: Slack already stopped the streams; the turn stops like on "stop".

        A repeat (Slack's redelivery, or a click after the turn ended) finds nothing running and is quiet:
        the button only shows on an answer, so there is nothing to explain.
        """
        channel, thread_ts = event.get("channel"), event.get("thread_ts")
        if channel and thread_ts:
            team_id = context.team_id or body.get("team_id") or ""
            await stop(ThreadKey(team_id, str(channel), str(thread_ts)), nothing_running=None)

    async def on_assistant_thread_started(
        event: dict[str, Any], context: AsyncBoltContext, body: dict[str, Any]
    ) -> None:
        thread = event.get("assistant_thread") or {}
        if surface is not None and thread.get("channel_id") and thread.get("thread_ts") and thread.get("user_id"):
            surface.thread_started(
                team_id=context.team_id or body.get("team_id") or str(thread.get("context", {}).get("team_id") or ""),
                channel=str(thread["channel_id"]),
                thread_ts=str(thread["thread_ts"]),
                user_id=str(thread["user_id"]),
            )

    async def on_app_home_opened(event: dict[str, Any], context: AsyncBoltContext, body: dict[str, Any]) -> None:
        if surface is not None and event.get("tab") == "home" and event.get("user"):
            surface.home_opened(team_id=context.team_id or body.get("team_id") or "", user_id=str(event["user"]))

    async def on_refused(incoming: Incoming) -> None:
        """One ephemeral notice: per message for a mention or DM, per thread for un-mentioned replies."""
        thread = incoming.thread
        if incoming.starts_session:
            key, only_in_session = ThreadKey(thread.team_id, thread.channel, incoming.ts), False
        else:
            key, only_in_session = thread, True
        if not await store.claim_access_notice(key, incoming.user_id, only_in_session=only_in_session):
            return  # told before, or a reply in a thread that is not the bot's
        log.info("refused %s in %s (not enabled for them there)", incoming.user_id, thread.channel)
        notices.post_ephemeral(
            team_id=thread.team_id,
            channel=thread.channel,
            user_id=incoming.user_id,
            text=refusal_text(incoming, policy),
            thread_ts=thread.thread_ts if incoming.is_thread_reply else None,
        )

    async def user_message(event: dict[str, Any], *, team_id: str, bot_user_id: str | None) -> None:
        incoming = classify(event, team_id=team_id, bot_user_id=bot_user_id)
        if incoming is None:
            return
        if not is_question(incoming.text, has_files=bool(incoming.files)):
            return  # "thanks", "👍", "k": nothing to answer, nothing to spend
        thread = incoming.thread
        if not allowed(
            policy, team_id=thread.team_id, channel=thread.channel, user_id=incoming.user_id, is_dm=incoming.is_dm
        ):
            await on_refused(incoming)
            return
        if is_stop_request(incoming):
            await on_stop(incoming)
            return
        if forget is not None and is_forget_request(incoming):
            if first_delivery(incoming):
                log.info("forget requested in %s", incoming.thread)
                forget(incoming.thread, detect_language(incoming.text), incoming.starts_session)
            return
        if not incoming.starts_session:
            rule = follow_up_rule(policy.follow_ups, is_dm=incoming.is_dm)
            if rule is FollowUp.IGNORE:
                return  # FOLLOW_UPS=mention: a reply without a mention is not addressed to the bot
            if rule is FollowUp.IF_PARTICIPANT:
                incoming = replace(incoming, requires_participant=True)
        turn = await store.accept_message(incoming)
        if turn is None:
            log.debug("ignored duplicate or session-less message %s in %s", incoming.ts, incoming.thread)
            return
        log.info("turn %s accepted in %s", turn.id, turn.thread)
        scheduler.submit(turn)

    async def on_user_message(event: dict[str, Any], context: AsyncBoltContext, body: dict[str, Any]) -> None:
        team_id = context.team_id or body.get("team_id") or event.get("team") or ""
        await user_message(event, team_id=team_id, bot_user_id=context.bot_user_id)

    async def on_feedback(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        rating, _, response_id = str(action.get("value") or "").partition(":")
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        message_ts = container.get("message_ts") or message.get("ts")
        thread_ts = container.get("thread_ts") or message.get("thread_ts") or message_ts
        user_id = (body.get("user") or {}).get("id")
        if rating in {"good", "bad"} and response_id and channel and message_ts and user_id:
            team_id = context.team_id or (body.get("team") or {}).get("id") or ""
            await store.record_feedback(
                thread=ThreadKey(team_id, str(channel), str(thread_ts)),
                message_ts=str(message_ts),
                user_id=str(user_id),
                response_id=response_id,
                rating=rating,
            )
            log.info("feedback %s on %s", rating, response_id)
        await ack()

    async def on_app_uninstalled(body: dict[str, Any]) -> None:
        if uninstalled is not None and (team_id := body.get("team_id")):
            uninstalled(str(team_id), "app_uninstalled")

    async def on_tokens_revoked(event: dict[str, Any], body: dict[str, Any]) -> None:
        # Only the bot's token matters: user tokens (`tokens.oauth`) are not used by the bot.
        bots = (event.get("tokens") or {}).get("bot") or []
        if uninstalled is not None and bots and (team_id := body.get("team_id")):
            uninstalled(str(team_id), "tokens_revoked")

    app.event("app_uninstalled")(on_app_uninstalled)
    app.event("tokens_revoked")(on_tokens_revoked)
    app.event("app_mention")(on_user_message)
    app.event("message")(on_user_message)
    app.action(FEEDBACK_ACTION_ID)(on_feedback)
    app.event("agent_session_stopped")(on_stop_button)
    app.event("assistant_thread_started")(on_assistant_thread_started)
    app.event("app_home_opened")(on_app_home_opened)
    return user_message
