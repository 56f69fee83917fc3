"""Composition root: builds the Slack app, the clients and the store, wires them, runs a transport."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from dataclasses import dataclass

import aiohttp
import openai
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis.startup import check_model
from bot.analysis.turns import TurnRunner
from bot.analysis.workspace import Workspace
from bot.config import Settings
from bot.domain import ThreadKey, Turn
from bot.errors import ConfigError
from bot.governance.budgets import BudgetGuard
from bot.governance.forget import ThreadForget
from bot.governance.pricing import Pricing
from bot.governance.retention import Forgetter, RetentionSweeper
from bot.i18n import Language, t
from bot.slack import listeners
from bot.slack.home import AgentSurface
from bot.slack.notices import ThreadNotices
from bot.slack.startup import BotIdentity, socket_mode_url
from bot.store import Store
from bot.store.usage import UsageLedger
from bot.turn.conductor import Conductor
from bot.turn.files_in import ThreadLimits
from bot.turn.intake import Intake
from bot.turn.scheduler import TurnScheduler

log = logging.getLogger(__name__)

# SIGTERM -> exit within 10 s: running turns get this long to finish, the rest resume after restart.
SHUTDOWN_GRACE_S = 7.0


def build_slack_client(
    settings: Settings, *, session: aiohttp.ClientSession | None = None, with_token: bool = True
) -> AsyncWebClient:
    """A Web API client that waits out rate limits and retries transient failures.

    With `session` all calls share its connection pool (without one, slack_sdk opens a new
    connection, and TLS handshake, for every call).
    """
    return AsyncWebClient(
        token=settings.slack_bot_token if with_token else None,
        base_url=settings.slack_api_url,
        session=session,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=4),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def build_openai_client(settings: Settings) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        max_retries=3,
        timeout=openai.Timeout(600.0, connect=10.0),
    )


@dataclass
class Bot:
    """A wired bot: the Bolt app plus everything it owns."""

    settings: Settings
    app: AsyncApp
    store: Store
    scheduler: TurnScheduler
    openai_client: openai.AsyncOpenAI
    slack_client: AsyncWebClient
    http: aiohttp.ClientSession
    identity: BotIdentity
    notices: ThreadNotices
    surface: AgentSurface
    forgets: ThreadForget
    sweeper: RetentionSweeper

    async def resume_unfinished(self) -> int:
        """Claim and queue the unfinished turns that no live process holds; returns how many.

        These are turns released by a process that shut down cleanly, and the turns of a process that
        died (`kill -9`, a crash) once their leases ran out (`TURN_LEASE_S`), also one that ran on this host.
        """
        claimed = await self.store.claim_unfinished_turns()
        for turn in claimed:
            self.scheduler.submit(turn)
        if claimed:
            log.info("resuming %d unfinished turn(s)", len(claimed))
        return len(claimed)

    async def keep_leases(self) -> None:
        """Renew the claims on the turns this process holds and take over orphaned ones, until cancelled.

        A held turn whose claim is gone (another process took it over while this one could not
        renew) is dropped here, so it is never answered twice.
        """
        interval = self.store.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                held = self.scheduler.held_turn_ids()
                lost = held - await self.store.renew_leases(held)
                if lost:
                    log.warning("lost the claim on turn(s) %s; another process answers them", sorted(lost))
                    self.scheduler.abandon(lost)
                await self.resume_unfinished()
            except Exception:  # a database hiccup must not end the keeper; the next round retries
                log.exception("renewing turn leases failed")

    async def close(self, *, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop taking work, give running turns `grace_s`, then release every client.

        Turns left unfinished are released, so the next process (or another replica) answers them.
        """
        await self.scheduler.close(grace_s=grace_s)
        await self.forgets.close(grace_s=min(grace_s, 2.0))
        await self.notices.close()
        await self.surface.close()
        with contextlib.suppress(Exception):
            await self.store.release_leases()
        await self.openai_client.close()
        await self.store.close()
        await self.http.close()


async def build_bot(
    settings: Settings,
    *,
    slack_client: AsyncWebClient | None = None,
    openai_client: openai.AsyncOpenAI | None = None,
    store: Store | None = None,
) -> Bot:
    """Wire a bot from `settings`; tests pass clients aimed at the loopback fakes."""
    # The schema is upgraded here, before anything can take an event (and before anything needs closing).
    db = store or await Store.open(settings.database_url, owner=settings.instance_id, lease_s=settings.turn_lease_s)
    # One connection pool for Slack's Web API and its file downloads.
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60))
    slack = slack_client or build_slack_client(settings, session=http)
    oai = openai_client or build_openai_client(settings)
    workspace = Workspace(oai, memory_limit=settings.container_memory_limit)
    intake = Intake(
        slack=slack,
        workspace=workspace,
        bot_token=settings.slack_bot_token,
        size_limit_bytes=settings.file_size_limit_bytes,
        http=http,
    )
    conductor = Conductor(
        store=db,
        slack=slack,
        workspace=workspace,
        runner=TurnRunner(oai, model=settings.openai_model, instructions=settings.instructions),
        intake=intake,
        limits=ThreadLimits(max_files=settings.max_files_per_thread, max_bytes=settings.max_thread_mb * 1_048_576),
        pricing=Pricing(settings.prices, container_memory_limit=settings.container_memory_limit),
        budgets=BudgetGuard(settings.budgets, spending=UsageLedger(db.engine)),
    )
    notices = ThreadNotices(slack)
    scheduler = TurnScheduler(
        conductor.run,
        max_concurrent=settings.max_concurrent_turns,
        on_queued=lambda turn, ahead: announce_queued(notices, turn, ahead),
        on_slot_wait=lambda turn, ahead: notices.show_status(
            turn.thread, t("status.waiting_slot", turn.language, place=ahead)
        ),
    )
    identity = BotIdentity(slack)

    # A plain function: Bolt passes arguments by their names (and would pass a method its `self`).
    async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return await identity.result()

    app = AsyncApp(
        # Bolt copies this client per request and gives it the token from `authorize`.
        client=build_slack_client(settings, session=http, with_token=False),
        authorize=authorize,
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=not settings.socket_mode,
        process_before_response=True,
        # We never use say_stream/set_status kwargs (reply.py calls the API itself); skipping them
        # saves work on every event.
        attaching_conversation_kwargs_enabled=False,
    )
    forgetter = Forgetter(store=db.retention, workspace=workspace)
    forgets = ThreadForget(forgetter=forgetter, scheduler=scheduler, notices=notices)

    def forget(thread: ThreadKey, lang: Language, addressed: bool) -> None:
        forgets.request(thread, lang, addressed=addressed)

    surface = AgentSurface(slack, recent_threads=lambda team_id, user_id: db.recent_threads(team_id, user_id))
    listeners.register(
        app, store=db, scheduler=scheduler, notices=notices, forget=forget, access=settings.access, surface=surface
    )
    return Bot(
        settings=settings,
        app=app,
        store=db,
        scheduler=scheduler,
        openai_client=oai,
        slack_client=slack,
        http=http,
        identity=identity,
        notices=notices,
        surface=surface,
        forgets=forgets,
        sweeper=RetentionSweeper(
            forgetter, retention_days=settings.retention_days, interval_s=settings.retention_sweep_s
        ),
    )


def announce_queued(notices: ThreadNotices, turn: Turn, ahead: int) -> None:
    """Tell the asker at once, only them, that their question waits behind `ahead` earlier ones of the thread.

    Ephemeral, not the status line: the thread's status belongs to the turn that is running. Turns queued
    again after a restart (attempts > 0) were announced before.
    """
    if turn.attempts == 0:
        notices.post_ephemeral(
            channel=turn.thread.channel,
            user_id=turn.user_id,
            text=t("turn.queued", turn.language, ahead=ahead),
            thread_ts=turn.thread.thread_ts,
        )


def http_app(bot: Bot) -> web.Application:
    """HTTP mode: Slack events at `POST /slack/events`, readiness at `GET /healthz`."""

    async def events(request: web.Request) -> web.Response:
        bolt_response = await bot.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def healthz(_request: web.Request) -> web.Response:
        if not bot.scheduler.accepting:
            return web.json_response({"ok": False, "status": "stopping"}, status=503)
        return web.json_response({"ok": True})

    web_app = web.Application()
    web_app.add_routes([web.post("/slack/events", events), web.get("/healthz", healthz)])
    return web_app


async def serve(bot: Bot, *, stop: asyncio.Event, host: str = "0.0.0.0") -> None:
    """Run the configured transport until `stop` is set, then shut down in order.

    Raises `ConfigError` when Slack rejects a token or OpenAI the key or model, and its subclass
    `ServiceUnreachable` when either cannot be reached; every client is closed first.
    """
    try:
        await bot.identity.check()
        await check_model(bot.openai_client, model=bot.settings.openai_model)
    except ConfigError:
        await bot.close(grace_s=0)
        raise
    await bot.resume_unfinished()
    # Start-up objects live for the whole run: keep them out of the collector's way, so the first
    # burst of events does not meet a full collection.
    gc.collect()
    gc.freeze()
    leases = asyncio.create_task(bot.keep_leases(), name="turn-leases")
    sweeps = asyncio.create_task(bot.sweeper.run(), name="retention-sweep")
    try:
        if bot.settings.socket_mode:
            await _serve_socket_mode(bot, stop)
        else:
            await _serve_http(bot, stop, host)
    finally:
        for task in (sweeps, leases):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bot.close()


async def _serve_socket_mode(bot: Bot, stop: asyncio.Event) -> None:
    assert bot.settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(bot.app, bot.settings.slack_app_token)
    try:
        # The first URL is asked here, so a rejected app token stops the bot with one clear line.
        handler.client.wss_uri = await socket_mode_url(bot.app.client, app_token=bot.settings.slack_app_token)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("connected to Slack over Socket Mode")
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await handler.close_async()  # type: ignore[no-untyped-call]


async def _serve_http(bot: Bot, stop: asyncio.Event, host: str) -> None:
    runner = web.AppRunner(http_app(bot), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, bot.settings.port)
    await site.start()
    log.info("listening for Slack events on %s:%d/slack/events", host, bot.settings.port)
    try:
        await stop.wait()
    finally:
        await site.stop()
        await runner.cleanup()
