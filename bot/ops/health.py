"""The operating endpoints on an aiohttp app: `/healthz` (alive), `/readyz` (able to take work), `/metrics`.

HTTP mode serves them on `PORT` next to `/slack/events`; Socket Mode on `HEALTH_PORT` when it is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ops.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

# A database that does not answer `SELECT 1` within this long counts as down.
DATABASE_CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Readiness:
    """What `/readyz` asks: `stopping()` (shutdown began), `database()` (raises when it does not answer),
    `slack()` (Socket Mode connected, or the bot token accepted) and what `slack` means, for the body."""

    stopping: Callable[[], bool]
    database: Callable[[], Awaitable[None]]
    slack: Callable[[], Awaitable[bool]]
    slack_check: str = "socket_mode"

    async def problems(self) -> dict[str, str]:
        """Empty when ready; otherwise what is down, e.g. `{"database": "unreachable"}`."""
        if self.stopping():
            return {"process": "stopping"}
        down: dict[str, str] = {}
        try:
            await self.database()
        except Exception as exc:  # any failure of the check means "not ready"; the reason goes to the body
            down["database"] = f"unreachable ({exc.__class__.__name__})"
        if not await self.slack():
            down["slack"] = "not connected" if self.slack_check == "socket_mode" else "token not accepted"
        return down


def database_check(
    engine: AsyncEngine, *, timeout_s: float = DATABASE_CHECK_TIMEOUT_S
) -> Callable[[], Awaitable[None]]:
    """A check that runs `SELECT 1` on `engine` within `timeout_s` (raises otherwise)."""

    async def select_one() -> None:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    return select_one


def health_app(readiness: Readiness, metrics: Metrics) -> web.Application:
    """An aiohttp app with the three endpoints; callers may add their own routes to it."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_request: web.Request) -> web.Response:
        down = await readiness.problems()
        if down:
            return web.json_response({"ok": False, "down": down}, status=503)
        return web.json_response({"ok": True})

    async def metrics_text(_request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_text)])
    return app
