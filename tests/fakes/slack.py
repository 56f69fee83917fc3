"""A loopback fake of Slack: Web API, file hosting, Socket Mode, signed HTTP Events and the OAuth install flow.

One workspace (`team_id`, default T1) exists and has the app installed from the start; `add_team` adds more,
each with its own bot user and, once installed through OAuth (`/oauth/v2/authorize` then `oauth.v2.access`),
its own bot token. A Web API call acts in the workspace of its token: another workspace's channels and files
answer `channel_not_found` / `file_not_found`, a file download with another workspace's token gets the sign-in
page, and a token revoked by `uninstall` / `revoke_tokens` answers `token_revoked`.

`FakeSlack` is an aiohttp server on 127.0.0.1 (random port). Point the real clients at it:
`AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)`; Bolt's `AsyncSocketModeHandler` then finds
the websocket through `apps.connections.open`. Everything follows /work/shared/reference/slack-api.md: the JSON
shapes, the error names and the limits. Where real Slack is undocumented the fake picks the *stricter* reading,
so a bug shows up here rather than in production. Deliberate choices (see each method for details):

- `thread_ts` must name an existing top-level message (else `thread_not_found`; a reply's ts ->
  `cannot_reply_to_message`). Real Slack may silently post an orphan; a test should fail instead.
- `users.info` returns `locale` only with `include_locale=true`, like the real method.
- A stream lives `stream_ttl_s` from `chat.startStream`, appends do not extend it; afterwards append/stop
  answer `message_not_in_streaming_state`. `chat.update` on a live stream answers `streaming_state_conflict`.
- `conversations.replies` continuation pages omit the parent, as real Slack does.
- The bot's own posts come back as events (`message` with `bot_id`, `message_changed` for edits and stream
  stops) through whichever transport is active, so self-event filtering is exercised.
- Socket Mode retries use a new `envelope_id` with the same payload (same `event_id`), `retry_attempt` + 1.
- Missing required arguments answer the generic `invalid_arguments` (with `response_metadata.messages`).
- The agent surface (../shared/reference/slack-api.md §12): `press_stop()` is the native Stop button (Slack stops
  the thread's streams itself, then sends `agent_session_stopped`; the session stays "processing" until the app
  calls `agents.sessions.setStatus` or `chat.stopStream`); `open_assistant_thread()` opens a pane thread (root
  subtype `assistant_app_thread`, event `assistant_thread_started`); `open_app_home()` sends `app_home_opened`.
  A chunk without `id`, `title` or a valid `status` is refused with `invalid_chunks`.
- `chat.postEphemeral` messages are seen by one user only: they are in `ephemerals(user)`, never in `thread()`,
  `channel_root_messages()`, history or events. The user must be a member (`user_not_in_channel`);
  `markdown_text` is refused there, as the reference lists only `text`/`blocks` for the method.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import mimetypes
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

ACK_BUDGET_S = 3.0
MAX_RETRIES = 3
MARKDOWN_LIMIT_CHARS = 12_000
TEXT_TRUNCATE_CHARS = 40_000
SECTION_TEXT_LIMIT_CHARS = 3_000
MAX_BLOCKS = 50
# The data_visualization block (Block Kit reference): title ≤ 50, 1–6 series or pie segments, labels ≤ 20,
# ≤ 20 categories (as reported during the rollout), at most two per message.
CHART_TITLE_CHARS = 50
CHART_LABEL_CHARS = 20
CHART_MAX_SERIES = 6
CHART_MAX_CATEGORIES = 20
CHARTS_PER_MESSAGE = 2
DOWNLOAD_CHUNK_BYTES = 64 * 1024
HISTORY_DEFAULT_LIMIT = 100
REPLIES_DEFAULT_LIMIT = 1000
BOT_SCOPES = (
    "app_mentions:read,chat:write,files:read,files:write,channels:history,groups:history,"
    "im:history,mpim:history,reactions:write,users:read,assistant:write"
)
# Form-encoded clients send these as JSON strings; we decode them so tests see lists either way.
_JSON_PARAMS = ("blocks", "chunks", "files", "loading_messages", "metadata", "attachments", "prompts", "view")
_SESSION_STATUSES = {"processing", "active", "suspended", "closed"}
MAX_SUGGESTED_PROMPTS = 4
MAX_HOME_BLOCKS = 100
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_TASK_STATUSES = {"pending", "in_progress", "complete", "error"}
_PRETTY_TYPES = {"csv": "CSV", "tsv": "TSV", "png": "PNG", "text": "Plain Text", "xlsx": "Excel Spreadsheet"}
_THREAD_FIELDS = ("reply_count", "reply_users", "reply_users_count", "latest_reply", "reactions")
SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><meta charset="utf-8"><title>Slack</title></head>
<body class="sign_in"><h1>Sign in to Fake Workspace</h1>
<form action="/signin" method="post"><input type="email" name="email"><button>Sign In</button></form>
</body></html>
"""


class _SlackError(Exception):
    """An `{"ok": false, "error": ...}` answer; `extra` is merged into the body."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error, self.extra = error, extra

    @classmethod
    def invalid(cls, why: str) -> _SlackError:
        return cls("invalid_arguments", response_metadata={"messages": [f"[ERROR] {why}"]})


@dataclass
class RecordedCall:
    """One request: a Web API call (`method` = "chat.postMessage"), or a file GET / upload POST
    (`method` = "GET /files-pri/…" / "POST /upload/…"). `params` merges query string, form and JSON body
    (JSON-string `blocks`/`chunks`/`files` are decoded); `headers` keys are lower-cased but lookups accept
    any case."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None

    @property
    def token(self) -> str | None:
        """The bearer token of the Authorization header, or a `token` form parameter."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        token = self.params.get("token")
        return token if isinstance(token, str) else None


@dataclass
class VisibleMessage:
    """What a person sees of one message. `streaming` is True while a stream is open on it."""

    ts: str
    user: str | None
    bot: bool
    text: str
    files: list[dict[str, Any]]
    blocks: list[dict[str, Any]]
    streaming: bool
    thread_ts: str | None = None  # parent ts for replies, None for top-level messages
    tasks: list[dict[str, Any]] = field(default_factory=list)  # task_update chunks, merged by id
    reactions: list[str] = field(default_factory=list)
    broadcast: bool = False  # a thread reply also shown in the channel (reply_broadcast)


@dataclass
class Ephemeral:
    """A `chat.postEphemeral` message: only `user` sees it, and only until they reload."""

    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    message_ts: str


@dataclass
class _Team:
    """A workspace and the app's bot user in it; `bot_token` is None while the app is not installed."""

    id: str
    name: str
    bot_user_id: str
    bot_id: str
    bot_token: str | None = None


@dataclass
class _Channel:
    id: str
    is_im: bool
    bot_is_member: bool
    team_id: str = ""
    members: frozenset[str] | None = None  # None: every user of the workspace (a public channel)

    @property
    def type(self) -> str:
        return "im" if self.is_im else ("group" if self.id.startswith("G") else "channel")


@dataclass
class _Msg:
    channel: str
    ts: str
    user: str | None
    bot: bool
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    thread_ts: str | None = None
    subtype: str | None = None  # file_share / thread_broadcast
    client_msg_id: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    edited: dict[str, str] | None = None
    stream_started: float | None = None  # loop.time() of chat.startStream
    stream_stopped: bool = False

    @property
    def in_channel(self) -> bool:
        return self.thread_ts is None or self.subtype == "thread_broadcast"


@dataclass
class _File:
    obj: dict[str, Any]
    content: bytes | None
    path: Path | None
    size: int  # real byte count, served as Content-Length
    stub: bool


def _sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


class _Headers(dict[str, str]):
    """Request headers with lower-cased keys that also answer to any spelling (`h["Authorization"]`)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def _headers(request: web.Request) -> dict[str, str]:
    return _Headers((k.lower(), v) for k, v in request.headers.items())


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def _rich_text(text: str) -> list[dict[str, Any]]:
    """The rich_text block Slack clients attach to a typed message, with `user` elements for mentions."""
    elements: list[dict[str, Any]] = []
    pos = 0
    for m in _MENTION.finditer(text):
        if m.start() > pos:
            elements.append({"type": "text", "text": text[pos : m.start()]})
        elements.append({"type": "user", "user_id": m.group(1)})
        pos = m.end()
    if pos < len(text):
        elements.append({"type": "text", "text": text[pos:]})
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": uuid.uuid4().hex[:5], "elements": [section]}] if text else []


def _elements(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Interactive elements of Block Kit blocks (actions / context_actions / section accessory)."""
    found: list[dict[str, Any]] = []
    for block in blocks:
        found.extend(e for e in block.get("elements") or [] if isinstance(e, dict) and "action_id" in e)
        if isinstance(block.get("accessory"), dict) and "action_id" in block["accessory"]:
            found.append(block["accessory"])
    return found


def _is_label(value: Any, limit: int = CHART_LABEL_CHARS) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _chart_problems(i: int, block: dict[str, Any]) -> list[str]:
    """What Slack would say about a data_visualization block (one problem is enough to refuse it)."""
    at = f"[json-pointer:/blocks/{i}"
    if not _is_label(block.get("title"), CHART_TITLE_CHARS):
        return [f"must be 1-{CHART_TITLE_CHARS} characters {at}/title]"]
    chart = block.get("chart")
    if not isinstance(chart, dict) or chart.get("type") not in ("line", "bar", "area", "pie"):
        return [f"must be one of pie, bar, area, line {at}/chart/type]"]
    if chart["type"] == "pie":
        segments = chart.get("segments")
        if not isinstance(segments, list) or not 1 <= len(segments) <= CHART_MAX_SERIES:
            return [f"must have 1-{CHART_MAX_SERIES} items {at}/chart/segments]"]
        for j, seg in enumerate(segments):
            ok = isinstance(seg, dict) and _is_label(seg.get("label")) and _is_number(seg.get("value"))
            if not ok or seg["value"] <= 0:
                return [f"invalid segment {at}/chart/segments/{j}]"]
        return []
    series, axis = chart.get("series"), chart.get("axis_config")
    if not isinstance(series, list) or not 1 <= len(series) <= CHART_MAX_SERIES:
        return [f"must have 1-{CHART_MAX_SERIES} items {at}/chart/series]"]
    categories = axis.get("categories") if isinstance(axis, dict) else None
    if not isinstance(categories, list) or not 1 <= len(categories) <= CHART_MAX_CATEGORIES:
        return [f"must have 1-{CHART_MAX_CATEGORIES} items {at}/chart/axis_config/categories]"]
    if not all(_is_label(c) for c in categories):
        return [f"labels must be 1-{CHART_LABEL_CHARS} characters {at}/chart/axis_config/categories]"]
    for j, one in enumerate(series):
        data = one.get("data") if isinstance(one, dict) else None
        if not _is_label(one.get("name") if isinstance(one, dict) else None) or not isinstance(data, list):
            return [f"invalid series {at}/chart/series/{j}]"]
        for k, point in enumerate(data):
            if not (isinstance(point, dict) and _is_label(point.get("label")) and _is_number(point.get("value"))):
                return [f"invalid data point {at}/chart/series/{j}/data/{k}]"]
    return []


def _check_blocks(blocks: Any, *, charts_enabled: bool = True) -> list[dict[str, Any]]:
    """Validate Block Kit limits as Slack does: ≤50 blocks, section text ≤3,000, markdown blocks ≤12,000,
    data_visualization blocks (≤2 per message; refused altogether where `charts_enabled` is False, as in
    workspaces the block has not reached)."""
    if blocks is None:
        return []
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
        raise _SlackError("invalid_blocks_format")
    problems = [f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"] if len(blocks) > MAX_BLOCKS else []
    charts = [i for i, b in enumerate(blocks) if b["type"] == "data_visualization"]
    if charts and not charts_enabled:
        problems.append(f"unsupported type: data_visualization [json-pointer:/blocks/{charts[0]}/type]")
    elif len(charts) > CHARTS_PER_MESSAGE:
        problems.append(f"no more than {CHARTS_PER_MESSAGE} data_visualization blocks allowed [json-pointer:/blocks]")
    for i in charts:
        problems.extend(_chart_problems(i, blocks[i]))
    for i, b in enumerate(blocks):
        text = b.get("text")
        if b["type"] == "section" and isinstance(text, dict) and len(text.get("text", "")) > SECTION_TEXT_LIMIT_CHARS:
            problems.append(f"must be less than 3001 characters [json-pointer:/blocks/{i}/text/text]")
    if problems:
        raise _SlackError("invalid_blocks", response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})
    if sum(len(b.get("text", "")) for b in blocks if b["type"] == "markdown") > MARKDOWN_LIMIT_CHARS:
        raise _SlackError("msg_blocks_too_long")
    return blocks


class FakeSlack:
    """Slack's Web API, file host, Socket Mode websocket and HTTP Events delivery for one workspace.

    Channels `C1` (public, bot is a member) and `D1` (DM between the bot and `U1`) exist from the start;
    users `U1` (ko-KR), `U2` (en-US) and the bot user exist. Use as `async with FakeSlack() as slack:`.
    Timing knobs: `ack_timeout_s` (Slack's 3 s ack budget, both transports) and the attribute
    `retry_delays_s` (extra pause before retry 1..3; real Slack waits ≈0 s, 1 min, 5 min over HTTP).
    Extra records: `events` (every event_callback body produced), `envelopes` (Socket Mode envelopes sent),
    `socket_connections` (hellos sent). `status_history` also records the automatic clear ("") Slack performs
    when the app replies in a thread; explicit calls are in `calls_to("assistant.threads.setStatus")`.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "B1",
        app_id: str = "A1",
        signing_secret: str = "test-signing-secret",
        stream_ttl_s: float = 300.0,
        ack_timeout_s: float = ACK_BUDGET_S,
    ) -> None:
        self._teams = {team_id: _Team(team_id, "Fake Workspace", bot_user_id, bot_id, bot_token)}
        self._acting = self._teams[team_id]  # the workspace a call or event is about (the first one outside them)
        self._primary = self._acting
        self._revoked: set[str] = set()
        self.app_token, self.app_id = app_token, app_id
        # OAuth: the app's credentials, the redirect URL registered with it, and the codes handed out.
        self.client_id, self.client_secret = "1111.2222", "fake-client-secret"
        self.oauth_redirect_url: str | None = None
        self._codes: dict[str, tuple[str, str | None]] = {}
        self.consent_visits: list[
            RecordedCall
        ] = []  # GETs of /oauth/v2/authorize  # code -> (team_id, redirect_uri it was issued for)
        # False: refuse data_visualization blocks (invalid_blocks), as Slack did where the block had not arrived.
        self.charts_enabled = True
        self.signing_secret, self.stream_ttl_s, self.ack_timeout_s = signing_secret, stream_ttl_s, ack_timeout_s
        self.retry_delays_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
        # What the bot token was granted: every bot-token answer carries it in `x-oauth-scopes`, as Slack's does.
        self.granted_scopes: tuple[str, ...] = tuple(BOT_SCOPES.split(","))
        self.calls: list[RecordedCall] = []
        self.events: list[dict[str, Any]] = []
        self.envelopes: list[dict[str, Any]] = []
        self.status_history: list[tuple[str, str, str]] = []
        self.acks: dict[str, float] = {}
        self.http_events_url: str | None = None
        self.http_deliveries: list[tuple[int, float]] = []  # status 0 = connection failed
        # event_id -> the status of each HTTP delivery of that event, in the order they ended
        self.http_statuses: dict[str, list[int]] = {}
        self.socket_connections = 0
        self._rng = random.Random(0)
        self.base_url = self.api_url = ""
        self._http_log: list[RecordedCall] = []
        self._channels: dict[str, _Channel] = {}
        self._messages: dict[str, list[_Msg]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._files: dict[str, _File] = {}
        self._pending_uploads: dict[str, dict[str, Any]] = {}
        self._status: dict[tuple[str, str], str] = {}
        self._failures: dict[str, list[tuple[str, int, int | None]]] = {}
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._draining: set[int] = set()
        self._ack_waiters: dict[str, tuple[float, asyncio.Event]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # everything spawned; cancelled on close()
        self._deliveries: set[asyncio.Task[Any]] = set()  # delivery loops and in-flight HTTP posts
        self._seq = {"ts": 0, "event": 0, "file": 0}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ephemerals: list[Ephemeral] = []
        # The agent surface: per (channel, thread_ts) the session status, suggested prompts and title; per
        # user the published Home view.
        self.session_statuses: dict[tuple[str, str], str] = {}
        self.suggested_prompts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.titles: dict[tuple[str, str], str] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.add_channel("C1")
        self.add_channel("D1", is_im=True, members={"U1"})
        self.add_user("U1", name="user1", locale="ko-KR", tz="Asia/Seoul")
        self.add_user("U2", name="user2", locale="en-US", tz="America/Los_Angeles")
        self.add_user(bot_user_id, name="csv-analyst", is_bot=True)

    # ------------------------------------------------------------------ workspaces
    @property
    def team_id(self) -> str:
        return self._acting.id

    @property
    def bot_token(self) -> str:
        """The bot token of the workspace in question ("" while the app is not installed there)."""
        return self._acting.bot_token or ""

    @property
    def bot_user_id(self) -> str:
        return self._acting.bot_user_id

    @property
    def bot_id(self) -> str:
        return self._acting.bot_id

    def add_team(self, team_id: str, *, name: str, bot_user_id: str, bot_id: str, installed: bool = False) -> None:
        """Another workspace, with its own bot user (and a token at once if `installed`, else after OAuth)."""
        self._teams[team_id] = _Team(team_id, name, bot_user_id, bot_id)
        if installed:
            self._teams[team_id].bot_token = self._new_token(team_id)
        with self.as_team(team_id):
            self.add_user(bot_user_id, name="csv-analyst", is_bot=True)

    def token_of(self, team_id: str) -> str | None:
        """The live bot token of a workspace, or None."""
        return self._teams[team_id].bot_token

    @contextlib.contextmanager
    def as_team(self, team_id: str) -> Any:
        """Set up (`add_channel`, `add_user`, `add_file`) in workspace `team_id`; synchronous code only."""
        before, self._acting = self._acting, self._teams[team_id]
        try:
            yield
        finally:
            self._acting = before

    async def uninstall(self, team_id: str) -> None:
        """Someone removes the app from a workspace: its bot token is revoked, then `tokens_revoked` and
        `app_uninstalled` are delivered (a transport must be up)."""
        envelopes = self._revoke(team_id)
        with self.as_team(team_id):
            envelopes.append(self._envelope({"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"}))
        for envelope in envelopes:
            await self.deliver(envelope)

    async def revoke_tokens(self, team_id: str) -> None:
        """An admin revokes the app's bot token in a workspace: only `tokens_revoked` is delivered."""
        for envelope in self._revoke(team_id):
            await self.deliver(envelope)

    def _revoke(self, team_id: str) -> list[dict[str, Any]]:
        team = self._teams[team_id]
        if team.bot_token is not None:
            self._revoked.add(team.bot_token)
        team.bot_token = None
        with self.as_team(team_id):
            event = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [team.bot_user_id]}}
            return [self._envelope({**event, "event_ts": f"{time.time():.6f}"})]

    def _new_token(self, team_id: str) -> str:
        return f"xoxb-{team_id.lower()}-{uuid.uuid4().hex[:12]}"

    def _team_of_token(self, token: str) -> _Team | None:
        return next((t for t in self._teams.values() if t.bot_token is not None and t.bot_token == token), None)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port; sets `base_url` and `api_url`."""
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/oauth/v2/authorize", self._handle_authorize)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._handle_download)
        app.router.add_get("/files-pri/{team_file}/{name}", self._handle_download)
        app.router.add_get("/files/{user}/{file_id}/{name}", self._handle_html_page)
        app.router.add_get("/external/{file_id}/{name}", self._handle_html_page)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.api_url = f"{self.base_url}/api/"
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Cancel deliveries, close websockets, the server and the delivery session."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ workspace setup
    def add_channel(
        self,
        channel_id: str,
        *,
        is_im: bool = False,
        bot_is_member: bool = True,
        members: set[str] | None = None,
    ) -> None:
        """Create a conversation (in the workspace of `as_team`, default the first). IDs starting with D are DMs,
        G private channels, else public channels. Without membership the bot gets `not_in_channel` and no events
        from it, like real Slack. `members` (default: every user) decides who may receive an ephemeral there."""
        is_im = is_im or channel_id.startswith("D")
        people = frozenset(members) if members is not None else None
        self._channels[channel_id] = _Channel(channel_id, is_im, bot_is_member or is_im, self.team_id, people)
        self._messages.setdefault(channel_id, [])

    def add_user(
        self, user_id: str, *, name: str, locale: str = "en-US", tz: str = "UTC", is_bot: bool = False
    ) -> None:
        """Register a user for `users.info` (which returns `locale` only with `include_locale=true`)."""
        profile = {"real_name": name, "display_name": name, "team": self.team_id}
        self._users[user_id] = {"id": user_id, "team_id": self.team_id, "name": name, "real_name": name}
        self._users[user_id].update(deleted=False, tz=tz, is_bot=is_bot, profile=profile, locale=locale)

    def add_file(
        self,
        *,
        name: str,
        content: bytes | None = None,
        mimetype: str = "text/csv",
        filetype: str = "csv",
        user: str = "U1",
        content_path: str | os.PathLike[str] | None = None,
        stub: bool = False,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Host a file and return its full Slack file object (a copy).

        Give `content` bytes or `content_path` (streamed from disk in chunks, for huge files). `size` is the
        real byte count unless overridden. `overrides` are merged last: `size`, `mode` ("tombstone",
        "hidden_by_limit", "external"), `is_external`, `external_type`, `title`, `id`, … External files get an
        HTML `url_private` and no `url_private_download`. With `stub=True` messages and events carry only
        `{"id", "mode": "hosted", "file_access": "check_file_info"}`; `files.info` has the full object.
        """
        if not self.base_url:
            raise RuntimeError("FakeSlack.start() must run before add_file()")
        if (content is None) == (content_path is None):
            raise ValueError("give exactly one of content= or content_path=")
        fid = overrides.pop("id", None) or self._new_file_id()
        path = Path(content_path) if content_path is not None else None
        size = len(content) if content is not None else os.path.getsize(content_path)  # type: ignore[arg-type]
        now, external = int(time.time()), bool(overrides.get("is_external")) or overrides.get("mode") == "external"
        hosted, qname = f"{self.base_url}/files-pri/{self.team_id}-{fid}", quote(name)
        obj: dict[str, Any] = {
            "id": fid,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": _PRETTY_TYPES.get(filetype, filetype.upper()),
            "user": user,
            "user_team": self.team_id,
            "editable": False,
            "size": size,
            "mode": "external" if external else "hosted",
            "is_external": external,
            "external_type": "gdrive" if external else "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "file_access": "visible",
            "url_private": f"{self.base_url}/external/{fid}/{qname}" if external else f"{hosted}/{qname}",
            "url_private_download": f"{hosted}/download/{qname}",
            "permalink": f"{self.base_url}/files/{user}/{fid}/{qname}",
            "permalink_public": f"{self.base_url}/files/{self.team_id}-{fid}-public/{qname}",
            "has_rich_preview": False,
            "shares": {},
            "channels": [],
            "groups": [],
            "ims": [],
            "comments_count": 0,
        }
        if external:
            del obj["url_private_download"]
        obj.update(overrides)
        self._files[fid] = _File(obj, content, path, size, stub)
        return _copy(obj)

    # ------------------------------------------------------------------ people post
    async def user_posts(
        self,
        *,
        channel: str,
        text: str,
        user: str = "U1",
        files: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        deliver: bool = True,
    ) -> dict[str, Any]:
        """Store a person's message and deliver the events Slack would; returns the message dict (with "ts").

        Channel + `<@BOT>` mention -> `app_mention` then `message` (separate event_ids, same ts); channel without
        mention -> `message` only; DM -> `message` (channel_type "im") only; channels the bot is not in -> none.
        Files (from `add_file`) make it a `file_share` message (`files`, `upload: false`); `app_mention` carries
        them too. Fields edited on those dicts (e.g. `url_private_download`) become the file's truth.
        Raises RuntimeError if `deliver` and no transport is up. The message is in the channel's workspace.
        """
        known = self._channels.get(channel)
        with self.as_team(known.team_id if known else self.team_id):
            envelopes, posted = self._user_message(channel, text, user, files, thread_ts)
        if deliver:
            for env in envelopes:
                await self.deliver(env)
        return posted

    def _user_message(
        self,
        channel: str,
        text: str,
        user: str,
        files: list[dict[str, Any]] | None,
        thread_ts: str | None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        ch = self._channel(channel)
        if thread_ts is not None:
            self._thread_root(channel, thread_ts)
        fids = [f["id"] for f in files or []]
        if unknown := [fid for fid in fids if fid not in self._files]:
            raise KeyError(f"files {unknown} were not registered with add_file()")
        for f in files or []:  # a test may have edited the object (e.g. a URL): Slack now serves that version
            self._files[f["id"]].obj.update(
                {k: v for k, v in f.items() if k not in ("shares", "channels", "ims", "groups")}
            )
        msg = _Msg(channel, self._next_ts(), user, False, text, _rich_text(text), fids, thread_ts)
        msg.subtype, msg.client_msg_id = ("file_share" if fids else None), str(uuid.uuid4())
        self._store(msg)
        envelopes = []
        if ch.bot_is_member:
            if not ch.is_im and any(m.group(1) == self.bot_user_id for m in _MENTION.finditer(text)):
                ev = {k: v for k, v in self._message_event(msg).items() if k not in ("subtype", "channel_type")}
                envelopes.append(self._envelope({**ev, "type": "app_mention"}))
            envelopes.append(self._envelope(self._message_event(msg)))
        return envelopes, self._api_message(msg)

    # ------------------------------------------------------------------ what people see
    def thread(self, channel: str, thread_ts: str) -> list[VisibleMessage]:
        """Root plus replies, oldest first; [] if there is no such top-level message."""
        root = self._find(channel, thread_ts)
        if root is None or root.thread_ts is not None:
            return []
        return [self._visible(m) for m in [root, *self._replies(root)]]

    def channel_root_messages(self, channel: str) -> list[VisibleMessage]:
        """What the channel itself shows, oldest first: top-level messages plus broadcast thread replies."""
        return [self._visible(m) for m in self._messages.get(channel, []) if m.in_channel]

    def ephemerals(self, user: str | None = None, *, channel: str | None = None) -> list[Ephemeral]:
        """Ephemeral messages the bot showed, oldest first; only `user`'s (in `channel`) when given."""
        return [
            e
            for e in self._ephemerals
            if (user is None or e.user == user) and (channel is None or e.channel == channel)
        ]

    def status(self, channel: str, thread_ts: str) -> str:
        """The assistant.threads.setStatus text showing in that thread ("" if none or cleared)."""
        return self._status.get((channel, thread_ts), "")

    def file_downloads(self) -> list[RecordedCall]:
        """GETs of hosted files (url_private, url_private_download, permalinks), with response status."""
        return [c for c in self._http_log if c.method.startswith("GET ")]

    def file_uploads(self) -> list[RecordedCall]:
        """POSTs to upload URLs; params hold `file_id`, `declared_length` and `received_length`."""
        return [c for c in self._http_log if c.method.startswith("POST ")]

    def calls_to(self, method: str) -> list[RecordedCall]:
        """Recorded Web API calls of one method, in order."""
        return [c for c in self.calls if c.method == method]

    def fail_next(
        self,
        method: str,
        *,
        error: str = "ratelimited",
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail. `status=429` answers HTTP 429 with
        `{"ok":false,"error":"ratelimited"}` and `Retry-After` (default 1); else HTTP `status` with `error`."""
        self._failures.setdefault(method, []).extend([(error, status, retry_after)] * times)

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Poll until `predicate()` is true; on timeout raise AssertionError with the recent wire traffic."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not met within {timeout}s\n{self.dump()}")
            await asyncio.sleep(0.01)

    def dump(self, last: int = 40) -> str:
        """Human-readable tail of calls, events and deliveries, for assertion messages."""
        lines = ["recent Web API calls:"]
        for c in self.calls[-last:]:
            lines.append(f"  {c.method} {json.dumps(c.params, ensure_ascii=False, default=str)[:300]}")
        lines.append("recent events:")
        for e in self.events[-last:]:
            ev = e["event"]
            desc = f"{ev.get('type')}/{ev.get('subtype', '')} user={ev.get('user')} ts={ev.get('ts')}"
            lines.append(f"  {e['event_id']} {desc} text={str(ev.get('text', ''))[:80]!r}")
        lines.append(f"acks={self.acks} http_deliveries={self.http_deliveries} sockets={len(self._sockets)}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ delivery
    async def wait_socket_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until a Socket Mode client is connected and has been sent `hello`."""
        await self.wait_for(lambda: self._live_socket() is not None, timeout=timeout)

    async def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Send `{"type":"disconnect"}` on every open socket; clients re-open via apps.connections.open.
        No further envelopes go to those sockets."""
        for ws in list(self._sockets):
            self._draining.add(id(ws))
            with contextlib.suppress(ConnectionError):
                await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-1"}})

    async def drop_socket(self) -> None:
        """Close every socket abruptly (CLOSE frame), as when Slack recycles a connection."""
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)

    async def deliver(self, envelope: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = "") -> None:
        """Deliver one event_callback body via Socket Mode if a client is connected, else signed HTTP to
        `http_events_url`. Returns once the first attempt is on the wire; unacknowledged deliveries are
        retried in the background (≤3 retries). Raises RuntimeError when there is no transport."""
        if not self._has_transport():
            raise RuntimeError("no transport: connect a Socket Mode client or set http_events_url\n" + self.dump())
        sent = asyncio.Event()
        task = self._start_delivery(envelope, retry_attempt, retry_reason, sent)
        waiter = self._spawn(sent.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            raise error

    async def click(self, *, channel: str, message_ts: str, action_id: str, value: str, user: str = "U1") -> None:
        """A person clicks a button of a bot message: a `block_actions` interactive payload is delivered.

        The message must carry an element with `action_id` offering `value` (like a real click can only
        send what is on screen); feedback buttons offer their positive and negative values.
        """
        msg = self._find(channel, message_ts)
        if msg is None:
            raise KeyError(f"no message {channel}/{message_ts}")
        offered = {e.get("value") for e in _elements(msg.blocks) if e.get("action_id") == action_id}
        offered |= {
            b.get("value")
            for e in _elements(msg.blocks)
            if e.get("action_id") == action_id
            for b in (e.get("positive_button") or {}, e.get("negative_button") or {})
        }
        if value not in offered:
            raise AssertionError(f"message {message_ts} offers no {action_id}={value!r}; it has {offered}")
        element = next(e for e in _elements(msg.blocks) if e.get("action_id") == action_id)
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": self._users.get(user, {}).get("name", user), "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": msg.ts,
                "channel_id": channel,
                "is_ephemeral": False,
                "thread_ts": msg.thread_ts,
            },
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}",
            "team": {"id": self.team_id, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": channel.lower()},
            "message": self._api_message(msg),
            "state": {"values": {}},
            "response_url": f"{self.base_url}/actions/{uuid.uuid4().hex}",
            "actions": [
                {
                    "type": element.get("type", "button"),
                    "action_id": action_id,
                    "block_id": element.get("block_id", "b0"),
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if not self._has_transport():
            raise RuntimeError("no transport for the click\n" + self.dump())
        sent = asyncio.Event()
        self._start_delivery(payload, 0, "", sent, "interactive")
        await sent.wait()

    async def press_stop(self, *, channel: str, thread_ts: str, user: str = "U1") -> list[str]:
        """A person clicks the native Stop button of the thread's streamed answer: Slack stops every live
        stream of the thread itself, then delivers `agent_session_stopped` (with those streams' ts, possibly
        none). Returns the stopped message ts."""
        root = self._thread_root(channel, thread_ts)
        stopped = [m.ts for m in self._replies(root) if m.bot and self._is_streaming(m)]
        for m in self._replies(root):
            if m.ts in stopped:
                m.stream_stopped = True
        event = {"type": "agent_session_stopped", "channel": channel, "thread_ts": thread_ts}
        event.update(streaming_message_ts=stopped, user=user, event_ts=self._next_ts())
        await self.deliver(self._envelope(event))
        return stopped

    async def open_assistant_thread(self, *, user: str = "U1", channel: str = "D1", context_channel: str = "C1") -> str:
        """The user opens a new thread in the assistant pane: its root (subtype `assistant_app_thread`) is
        created and `assistant_thread_started` delivered. Returns the thread's ts."""
        ch = self._channel(channel)
        if not ch.is_im:
            raise ValueError("assistant threads live in the DM with the app")
        msg = _Msg(ch.id, self._next_ts(), self.bot_user_id, True, "New chat", subtype="assistant_app_thread")
        self._store(msg)
        context = {"channel_id": context_channel, "team_id": self.team_id, "enterprise_id": None}
        thread = {"user_id": user, "context": context, "channel_id": ch.id, "thread_ts": msg.ts}
        event = {"type": "assistant_thread_started", "assistant_thread": thread, "event_ts": self._next_ts()}
        await self.deliver(self._envelope(event))
        return msg.ts

    async def open_app_home(self, *, user: str = "U1", tab: str = "home") -> None:
        """The user opens the app's Home (or Messages) tab: `app_home_opened` is delivered."""
        event: dict[str, Any] = {"type": "app_home_opened", "user": user, "channel": "D1", "tab": tab}
        event["event_ts"] = self._next_ts()
        if user in self.home_views:
            event["view"] = {**self.home_views[user], "id": f"V{user}"}
        await self.deliver(self._envelope(event))

    async def wait_delivered(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every delivery (its retries and any still-running HTTP request) has finished."""
        await self.wait_for(lambda: not self._deliveries, timeout=timeout)

    async def post_signed(
        self,
        url: str,
        body: bytes,
        *,
        timestamp: str | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """POST `body` signed like Slack (override `timestamp`/`secret` to forge bad requests)."""
        ts = timestamp if timestamp is not None else str(int(time.time()))
        signature = _sign(secret if secret is not None else self.signing_secret, ts, body)
        hdrs = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
        assert self._session is not None, "start() first"
        async with self._session.post(url, data=body, headers={**hdrs, **(headers or {})}) as resp:
            return resp.status, await resp.text()

    def _live_socket(self) -> web.WebSocketResponse | None:
        """One of the app's open connections, at random: Slack delivers each event to one of them."""
        live = [ws for ws in self._sockets if not ws.closed and id(ws) not in self._draining]
        return self._rng.choice(live) if live else None

    def _has_transport(self) -> bool:
        return bool(self._sockets or self.http_events_url)

    def _spawn(self, coro: Any, *, delivery: bool = False) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        for owner in (self._tasks, self._deliveries) if delivery else (self._tasks,):
            owner.add(task)
            task.add_done_callback(owner.discard)
        return task

    def _start_delivery(
        self, body: dict[str, Any], attempt: int, reason: str, sent: asyncio.Event, kind: str = "events_api"
    ) -> asyncio.Task[Any]:
        return self._spawn(self._run_delivery(body, attempt, reason, sent, kind), delivery=True)

    async def _run_delivery(
        self, body: dict[str, Any], attempt: int, reason: str, sent: asyncio.Event, kind: str = "events_api"
    ) -> None:
        while True:
            if self._sockets or not self.http_events_url:
                ok, failure = await self._attempt_socket(body, attempt, reason, sent, kind)
            else:
                ok, failure = await self._attempt_http(body, attempt, reason, sent, kind)
            sent.set()
            if ok or attempt >= MAX_RETRIES:
                return
            attempt, reason = attempt + 1, failure
            if self.retry_delays_s[attempt - 1]:
                await asyncio.sleep(self.retry_delays_s[attempt - 1])

    async def _attempt_socket(
        self, body: dict[str, Any], attempt: int, reason: str, sent: asyncio.Event, kind: str = "events_api"
    ) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout_s
        while (ws := self._live_socket()) is None and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # a reconnecting client: Slack holds the event meanwhile
        if ws is None:
            return False, "timeout"
        env_id, acked = str(uuid.uuid4()), asyncio.Event()
        envelope = {"envelope_id": env_id, "type": kind, "payload": body, "accepts_response_payload": False}
        envelope.update(retry_attempt=attempt, retry_reason=reason)
        self._ack_waiters[env_id] = (loop.time(), acked)
        try:
            await ws.send_json(envelope)
        except (ConnectionError, RuntimeError):
            return False, "timeout"
        self.envelopes.append(envelope)
        sent.set()
        try:
            await asyncio.wait_for(acked.wait(), self.ack_timeout_s)
            return True, ""
        except TimeoutError:
            return False, "timeout"

    async def _attempt_http(
        self, body: dict[str, Any], attempt: int, reason: str, sent: asyncio.Event, kind: str = "events_api"
    ) -> tuple[bool, str]:
        ts = str(int(time.time()))
        if kind == "interactive":  # interactivity payloads are form-encoded, signed the same way
            raw = urlencode({"payload": json.dumps(body)}).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            raw, content_type = json.dumps(body).encode(), "application/json"
        headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        headers.update({"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": _sign(self.signing_secret, ts, raw)})
        if attempt:
            headers.update({"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": reason})
        post = self._spawn(self._post_event(str(self.http_events_url), raw, headers), delivery=True)
        sent.set()
        done, _ = await asyncio.wait({post}, timeout=self.ack_timeout_s)
        if not done:
            return False, "http_timeout"  # Slack retries at 3 s even though the first request still runs
        status, no_retry = post.result()
        self.http_statuses.setdefault(str(body.get("event_id") or ""), []).append(status)
        if status == 0:
            return False, "connection_failed"
        return (200 <= status < 300 or no_retry), "http_error"

    async def _post_event(self, url: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bool]:
        assert self._session is not None
        start = asyncio.get_running_loop().time()
        try:
            async with self._session.post(url, data=raw, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                status, no_retry = resp.status, resp.headers.get("X-Slack-No-Retry") == "1"
        except (aiohttp.ClientError, OSError):
            status, no_retry = 0, False
        self.http_deliveries.append((status, asyncio.get_running_loop().time() - start))
        return status, no_retry

    def _echo(self, event: dict[str, Any]) -> None:
        """Deliver an event about the bot's own message if a transport is up (it is always recorded)."""
        env = self._envelope(event)
        if self._has_transport():
            self._start_delivery(env, 0, "", asyncio.Event())

    # ------------------------------------------------------------------ HTTP handlers
    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except json.JSONDecodeError:
                    return web.json_response({"ok": False, "error": "invalid_json"})
                params.update(body if isinstance(body, dict) else {})
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        for key in _JSON_PARAMS:
            if isinstance(params.get(key), str) and params[key][:1] in "[{":
                with contextlib.suppress(json.JSONDecodeError):
                    params[key] = json.loads(params[key])
        call = RecordedCall(method, params, _headers(request), 200)
        self.calls.append(call)
        if self._failures.get(method):
            error, call.status, retry_after = self._failures[method].pop(0)
            if call.status == 429:
                retry = {"Retry-After": str(1 if retry_after is None else retry_after)}
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=retry)
            return web.json_response({"ok": False, "error": error}, status=call.status)
        if method == "oauth.v2.access":  # the app's client id and secret instead of a token
            try:
                return web.json_response({"ok": True, **self._oauth_v2_access(params, call.headers)})
            except _SlackError as e:
                return web.json_response({"ok": False, "error": e.error, **e.extra})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method", "req_method": method})
        wants_app_token = method == "apps.connections.open"
        team = None if call.token is None else self._team_of_token(call.token)
        try:
            if call.token is None:
                raise _SlackError("not_authed")
            if call.token in self._revoked:
                raise _SlackError("token_revoked")
            if (team is not None) if wants_app_token else (call.token == self.app_token):
                raise _SlackError("not_allowed_token_type")
            if (call.token != self.app_token) if wants_app_token else (team is None):
                raise _SlackError("invalid_auth")
            with self.as_team(team.id if team is not None else self._primary.id):
                result = handler(params)
        except _SlackError as e:
            return web.json_response({"ok": False, "error": e.error, **e.extra})
        headers = {"x-oauth-scopes": ",".join(self.granted_scopes)} if team is not None else {}
        return web.json_response({"ok": True, **result}, headers=headers)

    async def _handle_authorize(self, request: web.Request) -> web.StreamResponse:
        """slack.com/oauth/v2/authorize: the person installing is signed in to the workspace named by the
        `team` query parameter (default the first; Slack's own `team` parameter preselects one too) and clicks
        Allow: 302 to the redirect URL with a one-time `code` and the app's `state`. Without a redirect URL
        (in the request or `oauth_redirect_url`) or with an unknown client id: an error page, as Slack shows."""
        q = request.query
        self.consent_visits.append(RecordedCall(f"GET {request.path}", dict(q), _headers(request), 200))
        redirect = q.get("redirect_uri") or self.oauth_redirect_url
        team_id = q.get("team") or self._primary.id
        if q.get("client_id") != self.client_id or not redirect or team_id not in self._teams:
            return web.Response(status=400, text="<html><body>Invalid client_id or redirect_uri</body></html>")
        if not q.get("scope"):
            return web.Response(status=400, text="<html><body>Invalid permissions requested</body></html>")
        code = f"{team_id}.{uuid.uuid4().hex}"
        self._codes[code] = (team_id, q.get("redirect_uri"))
        scheme, netloc, path, query, _ = urlsplit(redirect)
        query = urlencode([*parse_qsl(query), ("code", code), ("state", q.get("state", ""))])
        raise web.HTTPFound(urlunsplit((scheme, netloc, path, query, "")))

    def _oauth_v2_access(self, p: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """Client id and secret by HTTP Basic auth (what slack_sdk sends) or form; a code works once and only
        with the redirect_uri it was issued for (`bad_redirect_uri`)."""
        client_id, client_secret = p.get("client_id"), p.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                client_id, _, client_secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
        if client_id != self.client_id:
            raise _SlackError("invalid_client_id")
        if client_secret != self.client_secret:
            raise _SlackError("bad_client_secret")
        issued = self._codes.pop(str(p.get("code") or ""), None)
        if issued is None:
            raise _SlackError("invalid_code")
        team_id, redirect_uri = issued
        if redirect_uri is not None and p.get("redirect_uri") != redirect_uri:
            raise _SlackError("bad_redirect_uri")
        team = self._teams[team_id]
        if team.bot_token is None:
            team.bot_token = self._new_token(team_id)
        return {
            "access_token": team.bot_token,
            "token_type": "bot",
            "scope": BOT_SCOPES,
            "bot_user_id": team.bot_user_id,
            "app_id": self.app_id,
            "team": {"id": team.id, "name": team.name},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": "U1"},
        }

    def issue_code(self, team_id: str, *, redirect_uri: str | None = None) -> str:
        """A code as /oauth/v2/authorize would hand out (for tests that skip the browser part)."""
        code = f"{team_id}.{uuid.uuid4().hex}"
        self._codes[code] = (team_id, redirect_uri)
        return code

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)  # answers the SDK's sdk-ping-pong pings
        await ws.prepare(request)
        debug = {"host": "applink-fake-1", "build_number": 10, "approximate_connection_time": 18060}
        hello = {"type": "hello", "num_connections": len(self._sockets) + 1, "debug_info": debug}
        await ws.send_json({**hello, "connection_info": {"app_id": self.app_id}})
        self._sockets.append(ws)
        self.socket_connections += 1
        try:
            async for msg in ws:
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    env_id = json.loads(msg.data).get("envelope_id")
                    if env_id in self._ack_waiters:
                        sent_at, acked = self._ack_waiters.pop(env_id)
                        self.acks[env_id] = asyncio.get_running_loop().time() - sent_at
                        acked.set()
        finally:
            self._sockets.remove(ws)
            self._draining.discard(id(ws))
        return ws

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        """The upload URL: raw bytes or multipart `file`, no auth; `OK - <len>` as text/plain."""
        fid = request.match_info["file_id"]
        if request.content_type.startswith("multipart/"):
            part = (await request.post()).get("file")
            data = part.file.read() if isinstance(part, web.FileField) else str(part or "").encode()
        else:
            data = await request.read()
        pending = self._pending_uploads.get(fid)
        declared = pending and pending["length"]
        params = {"file_id": fid, "declared_length": declared, "received_length": len(data)}
        self._http_log.append(RecordedCall(f"POST {request.path}", params, _headers(request), 200 if pending else 404))
        if pending is None:
            return web.Response(status=404, text="Not Found")
        pending["data"] = data  # Slack is lenient about length mismatches; file_uploads() shows both
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        """Hosted bytes, streamed; without the bot token the classic pitfall: 200 + an HTML sign-in page."""
        team, _, fid = request.match_info["team_file"].partition("-")
        call = RecordedCall(f"GET {request.path}", dict(request.query), _headers(request), 200)
        self._http_log.append(call)
        if team not in self._teams or call.token is None or call.token != self._teams[team].bot_token:
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html")  # not signed in to that workspace
        f = self._files.get(fid)
        if (
            f is None
            or f.obj.get("user_team") != team
            or f.obj.get("mode") in ("tombstone", "hidden_by_limit", "external")
        ):
            call.status = 404
            return web.Response(status=404, text="Not Found")
        resp = web.StreamResponse(headers={"Content-Type": f.obj["mimetype"], "Content-Length": str(f.size)})
        if "/download/" in request.path:
            resp.headers["Content-Disposition"] = f'attachment; filename="{f.obj["name"]}"'
        await resp.prepare(request)
        if f.content is not None:
            for i in range(0, len(f.content), DOWNLOAD_CHUNK_BYTES):
                await resp.write(f.content[i : i + DOWNLOAD_CHUNK_BYTES])
        else:
            assert f.path is not None
            fh = await asyncio.to_thread(f.path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(fh.read, DOWNLOAD_CHUNK_BYTES):
                    await resp.write(chunk)
            finally:
                fh.close()
        await resp.write_eof()
        return resp

    async def _handle_html_page(self, request: web.Request) -> web.StreamResponse:
        """Permalinks and external files are web pages, never the bytes."""
        self._http_log.append(RecordedCall(f"GET {request.path}", dict(request.query), _headers(request), 200))
        return web.Response(text=SIGN_IN_PAGE, content_type="text/html")

    # ------------------------------------------------------------------ Web API methods
    def _m_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        ids = {"team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id}
        return {"url": f"{self.base_url}/", "team": self._acting.name, "user": "csv-analyst", **ids}

    def _m_apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"url": f"{self.base_url.replace('http', 'ws', 1)}/link/?ticket={ticket}&app_id={self.app_id}"}

    def _m_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        """`markdown_text` (≤12,000) excludes `text`/`blocks` (`markdown_text_conflict`); text over 40,000 is
        truncated; no content -> `no_text`; `thread_ts` must be a root; `reply_broadcast` shows it in channel."""
        ch = self._writable(p.get("channel"))
        text, blocks = self._content(p, truncate=True)
        thread_ts = p.get("thread_ts") or None
        if thread_ts:
            self._thread_root(ch.id, thread_ts)
        broadcast = thread_ts and str(p.get("reply_broadcast", "")).lower() in ("1", "true")
        msg = self._bot_post(ch, text, blocks, thread_ts, subtype="thread_broadcast" if broadcast else None)
        return {"channel": ch.id, "ts": msg.ts, "message": self._api_message(msg)}

    def _m_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        """Shown to `user` only and not stored in the conversation: `ephemerals()` has it, `thread()` never.
        The user must be in the channel (`user_not_in_channel`); `thread_ts` must be a root; `text`/`blocks`
        only (no `markdown_text` in the reference for this method)."""
        ch = self._writable(p.get("channel"))
        user = str(p.get("user") or "")
        if not user:
            raise _SlackError.invalid("missing required field: user")
        if user not in self._users or (ch.members is not None and user not in ch.members):
            raise _SlackError("user_not_in_channel")
        if p.get("markdown_text") is not None:
            raise _SlackError.invalid("markdown_text is not supported by chat.postEphemeral")
        text, blocks = self._content(p, truncate=True)
        thread_ts = p.get("thread_ts") or None
        if thread_ts:
            self._thread_root(ch.id, thread_ts)
        ts = self._next_ts()
        self._ephemerals.append(Ephemeral(ch.id, user, text, blocks, thread_ts, ts))
        return {"message_ts": ts}

    def _m_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        """Only the bot's own messages (`cant_update_message`); a live stream -> `streaming_state_conflict`."""
        ch = self._channel(p.get("channel"))
        msg = self._find(ch.id, str(p.get("ts", "")))
        if msg is None:
            raise _SlackError("message_not_found")
        if not msg.bot:
            raise _SlackError("cant_update_message")
        if self._is_streaming(msg):
            raise _SlackError("streaming_state_conflict")
        text, blocks = self._content(p, truncate=False)
        before = self._api_message(msg)
        msg.text, msg.blocks, msg.edited = text, blocks, {"user": self.bot_user_id, "ts": self._next_ts()}
        self._echo_changed(msg, before)
        return {"channel": ch.id, "ts": msg.ts, "text": msg.text, "message": self._api_message(msg)}

    def _m_chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        """A bot token deletes only the app's own messages (`cant_delete_message`); gone -> `message_not_found`.
        A message still streaming can be deleted; the channel gets a hidden `message_deleted` event."""
        ch = self._channel(p.get("channel"))
        msg = self._find(ch.id, str(p.get("ts", "")))
        if msg is None:
            raise _SlackError("message_not_found")
        if not msg.bot:
            raise _SlackError("cant_delete_message")
        self._messages[ch.id].remove(msg)
        ts, kind = self._next_ts(), ch.type
        event = {"type": "message", "subtype": "message_deleted", "hidden": True, "deleted_ts": msg.ts}
        self._echo({**event, "channel": ch.id, "ts": ts, "event_ts": ts, "channel_type": kind})
        return {"channel": ch.id, "ts": msg.ts}

    def _m_chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        """Needs a root `thread_ts`; outside DMs also `recipient_team_id` and `recipient_user_id`.
        `task_display_mode` is timeline or plan. The thread's agent session becomes "processing"."""
        ch = self._writable(p.get("channel"))
        if not p.get("thread_ts"):
            raise _SlackError.invalid("missing required field: thread_ts")
        if p.get("task_display_mode") not in (None, "timeline", "plan"):
            raise _SlackError.invalid("task_display_mode must be timeline or plan")
        self._thread_root(ch.id, p["thread_ts"])
        if not ch.is_im and not p.get("recipient_team_id"):
            raise _SlackError("missing_recipient_team_id")
        if not ch.is_im and not p.get("recipient_user_id"):
            raise _SlackError("missing_recipient_user_id")
        msg = _Msg(ch.id, self._next_ts(), self.bot_user_id, True, thread_ts=p["thread_ts"])
        msg.stream_started = asyncio.get_running_loop().time()
        self._apply_chunks(msg, p)
        self._store(msg)
        self.session_statuses[(ch.id, p["thread_ts"])] = "processing"
        self._bot_replied(ch.id, p["thread_ts"])
        self._echo(self._message_event(msg))
        return {"channel": ch.id, "ts": msg.ts}

    def _m_chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        """≤12,000 markdown characters per call (`msg_too_long`); an ended or expired stream ->
        `message_not_in_streaming_state`."""
        msg = self._stream(p)
        if p.get("markdown_text") is None and not p.get("chunks"):
            raise _SlackError.invalid("markdown_text or chunks required")
        self._apply_chunks(msg, p)
        return {"channel": msg.channel, "ts": msg.ts}

    def _m_chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        """Optional final `markdown_text`/`chunks` and `blocks` (≤50, shown under the text)."""
        msg = self._stream(p)
        before = self._api_message(msg)
        self._apply_chunks(msg, p)
        msg.blocks = msg.blocks + _check_blocks(p.get("blocks") or None)
        msg.stream_stopped = True
        if msg.thread_ts and self.session_statuses.get((msg.channel, msg.thread_ts)) == "processing":
            self.session_statuses[(msg.channel, msg.thread_ts)] = "active"
        self._echo_changed(msg, before)
        return {"channel": msg.channel, "ts": msg.ts, "message": self._api_message(msg)}

    def _m_agents_sessions_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        """`status`: processing | active | suspended | closed; `title` (1–200) renames the session too."""
        ch = self._channel(p.get("channel_id"))
        if p.get("status") not in _SESSION_STATUSES or not p.get("thread_ts"):
            raise _SlackError.invalid("status must be processing, active, suspended or closed; thread_ts required")
        self._thread_root(ch.id, p["thread_ts"])
        self.session_statuses[(ch.id, p["thread_ts"])] = p["status"]
        if p.get("title"):
            self.titles[(ch.id, p["thread_ts"])] = str(p["title"])[:200]
        return {}

    def _assistant_thread(self, p: dict[str, Any]) -> tuple[str, str]:
        """Assistant methods work in the app's DM (split-view) threads only."""
        ch = self._channel(p.get("channel_id"))
        if not ch.is_im:
            raise _SlackError("channel_not_found")
        thread_ts = str(p.get("thread_ts") or "")
        if not thread_ts:
            raise _SlackError.invalid("missing required field: thread_ts")
        self._thread_root(ch.id, thread_ts)
        return ch.id, thread_ts

    def _m_assistant_threads_setSuggestedPrompts(self, p: dict[str, Any]) -> dict[str, Any]:
        """1–4 `prompts`, each with a `title` and a `message`; optional `title` above them."""
        key = self._assistant_thread(p)
        prompts = p.get("prompts")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_SUGGESTED_PROMPTS:
            raise _SlackError.invalid(f"prompts: 1 to {MAX_SUGGESTED_PROMPTS} items required")
        if not all(isinstance(x, dict) and x.get("title") and x.get("message") for x in prompts):
            raise _SlackError.invalid("prompts: each item needs title and message")
        self.suggested_prompts[key] = [dict(x) for x in prompts]
        return {}

    def _m_assistant_threads_setTitle(self, p: dict[str, Any]) -> dict[str, Any]:
        key = self._assistant_thread(p)
        if not p.get("title"):
            raise _SlackError.invalid("missing required field: title")
        self.titles[key] = str(p["title"])
        return {}

    def _m_views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        """A `home` view (≤100 blocks) for `user_id`; it replaces the one shown before."""
        user, view = str(p.get("user_id") or ""), p.get("view")
        if user not in self._users:
            raise _SlackError("user_not_found")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise _SlackError.invalid("view must be an object of type home")
        blocks = view.get("blocks") or []
        if not isinstance(blocks, list) or len(blocks) > MAX_HOME_BLOCKS:
            raise _SlackError("invalid_arguments")
        self.home_views[user] = _copy(view)
        return {"view": {**_copy(view), "id": f"V{user}", "team_id": self.team_id}}

    def _m_chat_getPermalink(self, p: dict[str, Any]) -> dict[str, Any]:
        ch = self._channel(p.get("channel"))
        msg = self._find(ch.id, str(p.get("message_ts", "")))
        if msg is None:
            raise _SlackError("message_not_found")
        link = f"https://fake.slack.com/archives/{ch.id}/p{msg.ts.replace('.', '')}"
        if msg.thread_ts:
            link += f"?thread_ts={msg.thread_ts}&cid={ch.id}"
        return {"channel": ch.id, "permalink": link}

    def _m_assistant_threads_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        """`status` "" clears. Slack also clears it when the app replies in the thread (recorded too)."""
        ch = self._channel(p.get("channel_id"))
        if not p.get("thread_ts") or "status" not in p:
            raise _SlackError.invalid("missing required field: thread_ts or status")
        if len(p.get("loading_messages") or []) > 10:
            raise _SlackError.invalid("loading_messages: no more than 10 items allowed")
        self._status[(ch.id, p["thread_ts"])] = p["status"]
        self.status_history.append((ch.id, p["thread_ts"], p["status"]))
        return {}

    def _m_reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        ch = self._channel(p.get("channel"))
        msg = self._find(ch.id, str(p.get("timestamp", "")))
        if msg is None:
            raise _SlackError("message_not_found")
        name = str(p.get("name", ""))
        if not name or ":" in name:
            raise _SlackError("invalid_name")
        users = msg.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise _SlackError("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _m_files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        f = self._files.get(str(p.get("file", "")))
        if f is None or f.obj.get("user_team") != self.team_id:
            raise _SlackError("file_not_found")
        if f.obj.get("mode") == "tombstone":
            raise _SlackError("file_deleted")
        return {"file": _copy(f.obj), "comments": [], "response_metadata": {"next_cursor": ""}}

    def _m_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        """[root, replies…] with `limit` (default 1000) and cursors; continuation pages omit the root."""
        ch = self._readable(p.get("channel"))
        root = self._find(ch.id, str(p.get("ts", "")))
        if root is None:
            raise _SlackError("thread_not_found")
        return self._page([root] if root.thread_ts else [root, *self._replies(root)], p, REPLIES_DEFAULT_LIMIT)

    def _m_conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        """Channel-level messages only, newest first; `latest`/`oldest` exclusive unless `inclusive`."""
        ch = self._readable(p.get("channel"))
        inclusive = str(p.get("inclusive", "")).lower() in ("1", "true")
        latest, oldest = float(p.get("latest") or "inf"), float(p.get("oldest") or 0)

        def in_range(t: float) -> bool:
            return (oldest <= t <= latest) if inclusive else (oldest < t < latest)

        msgs = [m for m in reversed(self._messages[ch.id]) if m.in_channel and in_range(float(m.ts))]
        return {**self._page(msgs, p, HISTORY_DEFAULT_LIMIT), "pin_count": 0}

    def _m_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        """`locale` only with `include_locale=true`, as in real Slack."""
        user = self._users.get(str(p.get("user", "")))
        if user is None:
            raise _SlackError("user_not_found")
        with_locale = str(p.get("include_locale", "")).lower() in ("1", "true")
        return {"user": {k: v for k, v in user.items() if with_locale or k != "locale"}}

    def _m_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("filename") or not str(p.get("length", "")).isdigit():
            raise _SlackError.invalid("missing required field: filename or length")
        fid = self._new_file_id()
        self._pending_uploads[fid] = {"filename": p["filename"], "length": int(p["length"]), "data": None}
        return {"upload_url": f"{self.base_url}/upload/v1/{fid}", "file_id": fid}

    def _m_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        """Unknown, not-yet-uploaded or already-completed ids -> `file_not_found` ("Could not find the file from
        the upload ticket"). With `channel_id`/`channels` the bot posts one file message (in `thread_ts`).
        The response's `shares` are empty: real Slack shares asynchronously (files.info shows them later)."""
        items = p.get("files")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise _SlackError.invalid("files must be a JSON array of {id, title}")
        if any((self._pending_uploads.get(str(i.get("id"))) or {}).get("data") is None for i in items):
            raise _SlackError("file_not_found")
        names = [c for c in str(p.get("channels") or p.get("channel_id") or "").split(",") if c]
        chans = [self._writable(c) for c in names]
        thread_ts = p.get("thread_ts") or None
        for ch in chans:
            if thread_ts:
                self._thread_root(ch.id, thread_ts)
        out = []
        for item in items:
            up = self._pending_uploads.pop(item["id"])
            name, title = up["filename"], item.get("title") or up["filename"]
            kind = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self.add_file(
                name=name,
                content=up["data"],
                mimetype=mime,
                filetype=kind,
                user=self.bot_user_id,
                id=item["id"],
                title=title,
            )
            out.append({**self._file_view(item["id"], full=True), "shares": {}})
        for ch in chans:
            self._bot_post(ch, str(p.get("initial_comment") or ""), [], thread_ts, files=[i["id"] for i in items])
        return {"files": out}

    # ------------------------------------------------------------------ internals
    def _next_ts(self) -> str:
        self._seq["ts"] += 1
        micros = self._seq["ts"] * 100
        return f"{1700000000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_file_id(self) -> str:
        self._seq["file"] += 1
        return f"F{self._seq['file']:08d}"

    def _envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        """Wrap an event in a full event_callback body (recorded in `events`)."""
        self._seq["event"] += 1
        authorization: dict[str, Any] = {"enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id}
        authorization.update(is_bot=True, is_enterprise_install=False)
        context = "4-" + base64.b64encode(json.dumps({"ch": event.get("channel")}).encode()).decode()
        env: dict[str, Any] = {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "context_team_id": self.team_id,
        }
        env.update(context_enterprise_id=None, api_app_id=self.app_id, event=event, type="event_callback")
        env.update(event_id=f"Ev{self._seq['event']:04d}FAKE", event_time=int(time.time()))
        env.update(authorizations=[authorization], is_ext_shared_channel=False, event_context=context)
        self.events.append(env)
        return env

    def _channel(self, channel: Any) -> _Channel:
        ch = self._channels.get(str(channel or ""))
        if ch is None or ch.team_id != self.team_id:
            raise _SlackError("channel_not_found")
        return ch

    def _writable(self, channel: Any) -> _Channel:
        ch = self._channel(channel)
        if not ch.bot_is_member:
            raise _SlackError("not_in_channel")
        return ch

    _readable = _writable  # bots read history only where they are members

    def _find(self, channel: str, ts: str) -> _Msg | None:
        return next((m for m in self._messages.get(channel, []) if m.ts == ts), None)

    def _thread_root(self, channel: str, thread_ts: str) -> _Msg:
        root = self._find(channel, thread_ts)
        if root is None:
            raise _SlackError("thread_not_found")
        if root.thread_ts is not None:
            raise _SlackError("cannot_reply_to_message")
        return root

    def _replies(self, root: _Msg) -> list[_Msg]:
        return [m for m in self._messages[root.channel] if m.thread_ts == root.ts]

    def _store(self, msg: _Msg) -> None:
        self._messages[msg.channel].append(msg)
        ch = self._channels[msg.channel]
        kind = "private" if ch.is_im or ch.id.startswith("G") else "public"
        for fid in msg.files:
            obj = self._files[fid].obj
            share = {"ts": msg.ts, "channel_name": ch.id.lower(), "team_id": self.team_id, "share_user_id": msg.user}
            share.update({"thread_ts": msg.thread_ts} if msg.thread_ts else {})
            obj["shares"].setdefault(kind, {}).setdefault(ch.id, []).append(share)
            bucket = obj["ims"] if ch.is_im else obj["groups"] if kind == "private" else obj["channels"]
            bucket.extend([] if ch.id in bucket else [ch.id])

    def _content(self, p: dict[str, Any], *, truncate: bool) -> tuple[str, list[dict[str, Any]]]:
        md, text, blocks = p.get("markdown_text"), p.get("text"), p.get("blocks")
        if md is not None:
            if text is not None or blocks is not None:
                raise _SlackError("markdown_text_conflict")
            if len(md) > MARKDOWN_LIMIT_CHARS:
                raise _SlackError("msg_too_long")
            return md, []
        checked = _check_blocks(blocks, charts_enabled=self.charts_enabled)
        if not text and not checked and not p.get("attachments"):
            raise _SlackError("no_text")
        text = str(text or "")
        if len(text) > TEXT_TRUNCATE_CHARS and not truncate:
            raise _SlackError("msg_too_long")  # chat.update refuses; chat.postMessage truncates
        return text[:TEXT_TRUNCATE_CHARS], checked

    def _bot_post(
        self,
        ch: _Channel,
        text: str,
        blocks: list[dict[str, Any]],
        thread_ts: str | None,
        *,
        files: list[str] | None = None,
        subtype: str | None = None,
    ) -> _Msg:
        msg = _Msg(ch.id, self._next_ts(), self.bot_user_id, True, text, blocks, list(files or []), thread_ts)
        msg.subtype = "file_share" if files else subtype
        self._store(msg)
        if thread_ts:
            self._bot_replied(ch.id, thread_ts)
        self._echo(self._message_event(msg))
        return msg

    def _bot_replied(self, channel: str, thread_ts: str) -> None:
        """Slack clears the thread's status indicator when the app replies in it."""
        if self._status.get((channel, thread_ts)):
            self._status[(channel, thread_ts)] = ""
            self.status_history.append((channel, thread_ts, ""))

    def _stream(self, p: dict[str, Any]) -> _Msg:
        ch = self._channel(p.get("channel"))
        msg = self._find(ch.id, str(p.get("ts", "")))
        if msg is None:
            raise _SlackError("message_not_found")
        if not msg.bot:
            raise _SlackError("message_not_owned_by_app")
        if not self._is_streaming(msg):
            raise _SlackError("message_not_in_streaming_state")
        return msg

    def _is_streaming(self, msg: _Msg) -> bool:
        if msg.stream_started is None or msg.stream_stopped:
            return False
        return asyncio.get_running_loop().time() - msg.stream_started < self.stream_ttl_s

    def _apply_chunks(self, msg: _Msg, p: dict[str, Any]) -> None:
        """Validate, then apply `markdown_text` and `chunks` (≤12,000 markdown chars per call). task_update:
        title/status replace, details append (as observed on real Slack)."""
        chunks, md = p.get("chunks") or [], str(p.get("markdown_text") or "")
        if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
            raise _SlackError.invalid("chunks must be an array of objects")
        for c in chunks:
            valid = {
                "markdown_text": isinstance(c.get("text"), str),
                "task_update": bool(c.get("id") and c.get("title")) and c.get("status") in _TASK_STATUSES,
                "plan_update": isinstance(c.get("title"), str),
                "blocks": isinstance(c.get("blocks"), list),
            }.get(str(c.get("type")), False)
            if not valid:
                raise _SlackError("invalid_chunks", response_metadata={"messages": [f"invalid chunk {c!r}"[:200]]})
        if len(md) + sum(len(c["text"]) for c in chunks if c["type"] == "markdown_text") > MARKDOWN_LIMIT_CHARS:
            raise _SlackError("msg_too_long")
        msg.text += md
        for c in chunks:
            if c["type"] == "markdown_text":
                msg.text += c["text"]
            elif c["type"] == "blocks":
                msg.blocks = msg.blocks + _check_blocks(c["blocks"])
            elif c["type"] == "task_update":
                task = next((t for t in msg.tasks if t["id"] == c["id"]), None)
                if task is None:
                    msg.tasks.append(dict(c))
                else:
                    details = task.get("details", "") + c.get("details", "")
                    task.update(c, **({"details": details} if details else {}))

    def _file_view(self, fid: str, *, full: bool = False) -> dict[str, Any]:
        f = self._files[fid]
        if f.stub and not full:
            return {"id": fid, "mode": "hosted", "file_access": "check_file_info"}
        return _copy(f.obj)

    def _api_message(self, m: _Msg) -> dict[str, Any]:
        """A message as conversations.history/replies and chat.* responses show it."""
        d: dict[str, Any] = {"type": "message", "user": m.user, "text": m.text, "ts": m.ts, "team": self.team_id}
        if m.bot:
            profile = {"id": self.bot_id, "app_id": self.app_id, "name": "csv-analyst", "icons": {}, "deleted": False}
            d.update(bot_id=self.bot_id, app_id=self.app_id, bot_profile={**profile, "team_id": self.team_id})
        elif m.client_msg_id:
            d["client_msg_id"] = m.client_msg_id
        d.update({"subtype": m.subtype} if m.subtype else {})
        d.update({"blocks": m.blocks} if m.blocks else {})
        if m.files:
            d.update(files=[self._file_view(f) for f in m.files], upload=m.bot, display_as_bot=False)
        if m.thread_ts:
            root = self._find(m.channel, m.thread_ts)
            d.update(thread_ts=m.thread_ts, parent_user_id=root.user if root else None)
        elif replies := self._replies(m):
            users = list(dict.fromkeys(r.user for r in replies))
            d.update(thread_ts=m.ts, reply_count=len(replies), reply_users=users, reply_users_count=len(users))
            d["latest_reply"] = replies[-1].ts
        d.update({"edited": m.edited} if m.edited else {})
        if m.reactions:
            d["reactions"] = [{"name": k, "users": v, "count": len(v)} for k, v in m.reactions.items()]
        return d

    def _message_event(self, m: _Msg) -> dict[str, Any]:
        """A `message` event: the API shape minus thread bookkeeping, plus channel/event_ts/channel_type."""
        ev = {k: v for k, v in self._api_message(m).items() if k not in _THREAD_FIELDS}
        if m.thread_ts is None:
            ev.pop("thread_ts", None)
        return {**ev, "channel": m.channel, "event_ts": m.ts, "channel_type": self._channels[m.channel].type}

    def _echo_changed(self, msg: _Msg, before: dict[str, Any]) -> None:
        ts, kind = self._next_ts(), self._channels[msg.channel].type
        ev = {"type": "message", "subtype": "message_changed", "message": self._api_message(msg), "hidden": True}
        self._echo(
            {**ev, "previous_message": before, "channel": msg.channel, "ts": ts, "event_ts": ts, "channel_type": kind}
        )

    def _visible(self, m: _Msg) -> VisibleMessage:
        files = [self._file_view(f) for f in m.files]
        tasks, broadcast = [dict(t) for t in m.tasks], m.subtype == "thread_broadcast"
        streaming = self._is_streaming(m)
        return VisibleMessage(
            m.ts,
            m.user,
            m.bot,
            m.text,
            files,
            list(m.blocks),
            streaming,
            m.thread_ts,
            tasks,
            sorted(m.reactions),
            broadcast,
        )

    def _page(self, msgs: list[_Msg], p: dict[str, Any], default_limit: int) -> dict[str, Any]:
        """One page of `msgs` by `limit`/`cursor`; cursors look like Slack's base64 "next_ts:…"."""

        def cursor(m: _Msg) -> str:
            return base64.b64encode(f"next_ts:{m.ts.replace('.', '')}".encode()).decode()

        start = 0
        if p.get("cursor"):
            start = next((i for i, m in enumerate(msgs) if cursor(m) == p["cursor"]), -1)
            if start < 0:
                raise _SlackError("invalid_cursor")
        try:
            limit = max(1, min(int(p.get("limit") or default_limit), 1000))
        except ValueError as exc:
            raise _SlackError("invalid_limit") from exc
        more = start + limit < len(msgs)
        next_cursor = cursor(msgs[start + limit]) if more else ""
        page = [self._api_message(m) for m in msgs[start : start + limit]]
        return {"messages": page, "has_more": more, "response_metadata": {"next_cursor": next_cursor}}
