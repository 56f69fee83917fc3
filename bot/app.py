"""Composition root: builds the Slack app, the clients and the store, wires them, runs a transport."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
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
from bot.ops import metrics as ops_metrics
from bot.ops.health import Readiness, database_check, health_app
from bot.ops.metrics import Metrics
from bot.slack import listeners
from bot.slack.client import CountingWebClient
from bot.slack.clients import SlackClients
from bot.slack.home import AgentSurface
from bot.slack.notices import ThreadNotices
from bot.slack.oauth import Installations, Uninstalls, installation_store, oauth_settings
from bot.slack.startup import BotIdentity, socket_mode_url
from bot.slack.transport import MessageDeliveries
from bot.store import Store
from bot.store.replicas import ReplicaCoordinator
from bot.store.usage import UsageLedger
from bot.turn.conductor import Conductor
from bot.turn.files_in import ThreadLimits
from bot.turn.intake import Intake
from bot.turn.scheduler import TurnScheduler

log = logging.getLogger(__name__)

# SIGTERM -> exit within 10 s: running turns get this long to finish, the rest resume after restart.
SHUTDOWN_GRACE_S = 7.0


def build_slack_client(
    settings: Settings, *, session: aiohttp.ClientSession | None = None, token: str | None = None
) -> AsyncWebClient:
    """A Web API client sending `token` that waits out rate limits and retries transient failures.

    With `session` all calls share its connection pool (without one, slack_sdk opens a new
    connection, and TLS handshake, for every call).
    """
    return CountingWebClient(
        token=token,
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
    slack_clients: SlackClients
    http: aiohttp.ClientSession
    identity: BotIdentity | None  # None in OAuth mode: every workspace has its own token
    notices: ThreadNotices
    surface: AgentSurface
    forgets: ThreadForget
    sweeper: RetentionSweeper
    uninstalls: Uninstalls
    metrics: Metrics
    # People's messages, taken from the transport before Bolt (`bot.slack.transport`).
    deliveries: MessageDeliveries
    installations: Installations | None = None
    # PostgreSQL only: per-thread locks, wake-ups and stops shared with the other replicas.
    replicas: ReplicaCoordinator | None = None
    _poke: asyncio.Event = field(default_factory=asyncio.Event)

    def on_replica_notice(self, kind: str, thread: ThreadKey | None) -> None:
        """A NOTIFY from any replica (this one too): stop a thread's turn, or look for work now."""
        if kind == "stop" and thread is not None:
            if self.scheduler.stop(thread):
                log.info("stop requested in %s (via another replica)", thread)
        elif kind == "wake":
            if thread is None:
                self._poke.set()
            else:
                self.scheduler.wake(thread)

    async def resume_unfinished(self) -> int:
        """Claim and queue the unfinished turns that no live process holds; returns how many.

        These are turns released by a process that shut down cleanly, and the turns of a process that
        died (`kill -9`, a crash) once their leases ran out (`TURN_LEASE_S`), also one that ran on this host.
        """
        if self.replicas is not None:
            # Threads, not turns: the process that gets a thread's lock adopts its turns in order.
            threads = await self.replicas.threads_with_work()
            for thread in threads:
                self.scheduler.wake(thread)
            return len(threads)
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
            # Another replica's clean shutdown (NOTIFY) wakes this loop early; the interval is the safety net.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), interval)
            self._poke.clear()
            try:
                held = self.scheduler.held_turn_ids()
                renewed = await self.store.renew_leases(held)
                # Turns that finished here while the renewal ran are not lost, only done.
                lost = (held - renewed) & self.scheduler.held_turn_ids()
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
        await self.uninstalls.close(grace_s=min(grace_s, 2.0))
        await self.notices.close()
        await self.surface.close()
        with contextlib.suppress(Exception):
            await self.store.release_leases()
        if self.replicas is not None:
            with contextlib.suppress(Exception):
                await self.replicas.notify("wake")  # the other replicas take our turns over at once
            await self.replicas.close()
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
    """Wire a bot from `settings`; tests pass clients aimed at the loopback fakes.

    With `settings.oauth` the app runs Bolt's OAuth flow and each workspace is answered with the token of its
    installation (`slack_client` is then unused); otherwise with the one bot token.
    """
    # The schema is upgraded here, before anything can take an event (and before anything needs closing).
    db = store or await Store.open(settings.database_url, owner=settings.instance_id, lease_s=settings.turn_lease_s)
    # One connection pool for Slack's Web API and its file downloads.
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60))
    oai = openai_client or build_openai_client(settings)
    workspace = Workspace(oai, memory_limit=settings.container_memory_limit)
    installations: Installations | None = None
    identity: BotIdentity | None = None
    if settings.oauth is None:
        slack = slack_client or build_slack_client(settings, session=http, token=settings.slack_bot_token)
        clients = SlackClients.single(slack)
        identity = BotIdentity(slack)
    else:
        installations = installation_store(db.engine, client_id=settings.oauth.client_id)
        clients = SlackClients(
            lookup=installations.bot_token,
            make_client=lambda token: build_slack_client(settings, session=http, token=token),
        )
    intake = Intake(workspace=workspace, size_limit_bytes=settings.file_size_limit_bytes, http=http)
    conductor = Conductor(
        store=db,
        slack=clients,
        workspace=workspace,
        runner=TurnRunner(oai, model=settings.openai_model, instructions=settings.instructions),
        intake=intake,
        limits=ThreadLimits(max_files=settings.max_files_per_thread, max_bytes=settings.max_thread_mb * 1_048_576),
        pricing=Pricing(settings.prices, container_memory_limit=settings.container_memory_limit),
        budgets=BudgetGuard(settings.budgets, spending=UsageLedger(db.engine)),
    )
    notices = ThreadNotices(clients)
    # The one place the database decides how turns are ordered: PostgreSQL may be shared by replicas.
    replicas = await ReplicaCoordinator.open(db) if db.engine.dialect.name == "postgresql" else None
    scheduler = TurnScheduler(
        conductor.run,
        max_concurrent=settings.max_concurrent_turns,
        gate=replicas,
        on_queued=lambda turn, ahead: announce_queued(notices, turn, ahead),
        on_slot_wait=lambda turn, ahead: notices.show_status(
            turn.thread, t("status.waiting_slot", turn.language, place=ahead)
        ),
    )
    metrics = Metrics()
    metrics.track_turns(in_progress=lambda: scheduler.running_count, waiting=lambda: scheduler.waiting_count)
    app = AsyncApp(
        # Bolt copies this client per request and gives it the token from `authorize`.
        client=build_slack_client(settings, session=http),
        **_authorization(settings, identity, installations, db),
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=not settings.socket_mode,
        process_before_response=True,
        # We never use say_stream/set_status kwargs (reply.py calls the API itself); skipping them
        # saves work on every event.
        attaching_conversation_kwargs_enabled=False,
    )
    forgetter = Forgetter(store=db.retention, workspace=workspace)
    stop_elsewhere = replicas.stop_elsewhere if replicas is not None else None
    forgets = ThreadForget(forgetter=forgetter, scheduler=scheduler, notices=notices, stop_elsewhere=stop_elsewhere)

    async def delete_installation(team_id: str) -> None:
        if installations is not None:
            clients.forget_token(await installations.uninstall(team_id))

    uninstalls = Uninstalls(delete_installation=delete_installation, forget_team=forgets.forget_team)

    def forget(thread: ThreadKey, lang: Language, addressed: bool) -> None:
        forgets.request(thread, lang, addressed=addressed)

    surface = AgentSurface(clients, recent_threads=lambda team_id, user_id: db.recent_threads(team_id, user_id))
    messages = listeners.register(
        app,
        store=db,
        scheduler=scheduler,
        notices=notices,
        forget=forget,
        uninstalled=uninstalls.request,
        access=settings.access,
        stop_elsewhere=stop_elsewhere,
        surface=surface,
    )

    async def bot_user(team_id: str) -> str | None:
        # One workspace: the auth.test asked at start. OAuth mode: the workspace's installation (None when
        # there is none, or for an org-wide install, whose events Bolt authorizes and ignores as before).
        if identity is not None:
            return (await identity.result()).bot_user_id if identity.known else None
        if installations is not None and team_id:
            return await installations.bot_user_id(team_id)
        return None

    deliveries = MessageDeliveries(
        messages,
        bot_user=bot_user,
        signing_secret=None if settings.socket_mode else settings.slack_signing_secret,
    )
    bot = Bot(
        settings=settings,
        app=app,
        store=db,
        scheduler=scheduler,
        openai_client=oai,
        slack_clients=clients,
        http=http,
        identity=identity,
        notices=notices,
        surface=surface,
        forgets=forgets,
        uninstalls=uninstalls,
        metrics=metrics,
        deliveries=deliveries,
        installations=installations,
        replicas=replicas,
        sweeper=RetentionSweeper(
            forgetter, retention_days=settings.retention_days, interval_s=settings.retention_sweep_s
        ),
    )
    if replicas is not None:
        replicas.on_notice = bot.on_replica_notice
    return bot


def announce_queued(notices: ThreadNotices, turn: Turn, ahead: int) -> None:
    """Tell the asker at once, only them, that their question waits behind `ahead` earlier ones of the thread.

    Ephemeral, not the status line: the thread's status belongs to the turn that is running. Turns queued
    again after a restart (attempts > 0) were announced before.
    """
    if turn.attempts == 0:
        notices.post_ephemeral(
            team_id=turn.thread.team_id,
            channel=turn.thread.channel,
            user_id=turn.user_id,
            text=t("turn.queued", turn.language, ahead=ahead),
            thread_ts=turn.thread.thread_ts,
        )


def _authorization(
    settings: Settings, identity: BotIdentity | None, installations: Installations | None, db: Store
) -> dict[str, Any]:
    """Bolt's `authorize` (one workspace, our cached auth.test) or `oauth_settings` (installations)."""
    if settings.oauth is None:
        assert identity is not None
        known = identity

        # A plain function: Bolt passes arguments by their names (and would pass a method its `self`).
        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            return await known.result()

        return {"authorize": authorize}
    assert installations is not None
    return {
        "oauth_settings": oauth_settings(
            settings.oauth, installations=installations, engine=db.engine, slack_api_url=settings.slack_api_url
        )
    }


def readiness(bot: Bot, *, stop: asyncio.Event, socket_handler: AsyncSocketModeHandler | None = None) -> Readiness:
    """What `/readyz` checks: not stopping, the database answers, and Slack (the Socket Mode connection, or
    in HTTP mode the bot token accepted by auth.test at start; in OAuth mode each workspace's token is checked
    when its events arrive, so only the database and stopping count)."""

    async def slack_ok() -> bool:
        if socket_handler is not None:
            return bool(await socket_handler.client.is_connected())
        return bot.identity.known if bot.identity is not None else True

    return Readiness(
        stopping=lambda: stop.is_set() or not bot.scheduler.accepting,
        database=database_check(bot.store.engine),
        slack=slack_ok,
        slack_check="socket_mode" if socket_handler is not None else "auth_test",
    )


def http_app(bot: Bot, ready: Readiness, *, stop: asyncio.Event) -> web.Application:
    """HTTP mode: Slack events at `POST /slack/events`, plus `/healthz`, `/readyz` and `/metrics`; in OAuth
    mode also Bolt's "Add to Slack" page (`GET /slack/install`) and its redirect (`GET /slack/oauth_redirect`).

    Once `stop` is set events are answered 503, so Slack retries them (on another replica, or after the
    restart) rather than handing them to a process that is closing.
    """

    async def events(request: web.Request) -> web.Response:
        if stop.is_set():
            return web.json_response({"ok": False, "status": "stopping"}, status=503)
        received = time.perf_counter()
        response = await bot.deliveries.take_http(request)
        if response is None:
            response = await to_aiohttp_response(await bot.app.async_dispatch(await to_bolt_request(request)))
        if 200 <= response.status < 300:
            bot.metrics.ack.observe(time.perf_counter() - received)
        return response

    web_app = health_app(ready, bot.metrics)
    web_app.add_routes([web.post("/slack/events", events)])
    if (flow := bot.app.oauth_flow) is not None:

        async def install(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

        async def oauth_redirect(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

        web_app.add_routes([web.get(flow.install_path, install), web.get(flow.redirect_uri_path, oauth_redirect)])
    return web_app


class _TimedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's handler, timing envelope received -> ack sent, that first offers people's messages to
    `deliveries` (acked once handled). Bolt acks only a successful (200) dispatch; otherwise (and when
    handling a message raised) nothing is sent and Slack delivers the envelope again."""

    def __init__(self, app: AsyncApp, app_token: str, *, metrics: Metrics, deliveries: MessageDeliveries) -> None:
        super().__init__(app, app_token)
        self._metrics = metrics
        self._deliveries = deliveries

    async def handle(self, client: Any, req: SocketModeRequest) -> None:
        received = time.perf_counter()
        if req.type == "events_api" and await self._deliveries.take(req.payload):
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            self._metrics.ack.observe(time.perf_counter() - received)
            return
        bolt_response = await run_async_bolt_app(self.app, req)
        await send_async_response(client, req, bolt_response, time.time())
        if bolt_response.status == 200:
            self._metrics.ack.observe(time.perf_counter() - received)


async def serve(bot: Bot, *, stop: asyncio.Event, host: str = "0.0.0.0") -> None:
    """Run the configured transport until `stop` is set, then shut down in order.

    The HTTP listener (events and operating endpoints on `PORT`, or only the latter on `HEALTH_PORT` in
    Socket Mode) stays up until the bot is closed, answering `/readyz` 503 from the moment `stop` is set.
    Raises `ConfigError` when Slack rejects a token or OpenAI the key or model, and its subclass
    `ServiceUnreachable` when either cannot be reached; every client is closed first.
    """
    # Everything started from here (transports, turns, keepers) counts into this bot's registry.
    ops_metrics.use(bot.metrics)
    try:
        if bot.identity is not None:
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
    handler = (
        _TimedSocketModeHandler(bot.app, bot.settings.slack_app_token, metrics=bot.metrics, deliveries=bot.deliveries)
        if bot.settings.slack_app_token is not None
        else None
    )
    ready = readiness(bot, stop=stop, socket_handler=handler)
    listener: web.AppRunner | None = None
    leases = asyncio.create_task(bot.keep_leases(), name="turn-leases")
    sweeps = asyncio.create_task(bot.sweeper.run(), name="retention-sweep")
    try:
        if handler is None:
            listener = await _listen(http_app(bot, ready, stop=stop), host, bot.settings.port)
            log.info("listening for Slack events on %s:%d/slack/events", host, bot.settings.port)
            await stop.wait()
        else:
            if bot.settings.health_port is not None:
                listener = await _listen(health_app(ready, bot.metrics), host, bot.settings.health_port)
                log.info("health, readiness and metrics on %s:%d", host, bot.settings.health_port)
            await _serve_socket_mode(bot, handler, stop)
    finally:
        for task in (sweeps, leases):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await bot.close()
        finally:
            if listener is not None:
                await listener.cleanup()


async def _serve_socket_mode(bot: Bot, handler: AsyncSocketModeHandler, stop: asyncio.Event) -> None:
    assert bot.settings.slack_app_token is not None
    try:
        # The first URL is asked here, so a rejected app token stops the bot with one clear line.
        handler.client.wss_uri = await socket_mode_url(bot.app.client, app_token=bot.settings.slack_app_token)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("connected to Slack over Socket Mode")
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await handler.close_async()  # type: ignore[no-untyped-call]


async def _listen(web_app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(web_app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
