"""Installing the app in many workspaces: Bolt's OAuth flow on slack_sdk's SQLAlchemy stores, and uninstalls.

slack_sdk ships async SQLAlchemy stores (`AsyncSQLAlchemyInstallationStore`, `AsyncSQLAlchemyOAuthStateStore`)
that take an `AsyncEngine`, so they run on the bot's own engine and connection pool, without threads; their
tables come from our migrations (revision 0005), never from `create_tables()`. Every replica on the same
`DATABASE_URL` therefore sees every installation and can finish an install another one started.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin

import sqlalchemy as sa
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import OAuth
from bot.tasks import OwnedTasks

log = logging.getLogger(__name__)

# How long an "Add to Slack" link stays good (Bolt's default).
STATE_EXPIRATION_S = 600


class Installations(AsyncSQLAlchemyInstallationStore):
    """slack_sdk's installation store, plus the one question a turn asks: the bot token of a workspace."""

    async def bot_token(self, team_id: str) -> str | None:
        """The newest bot token installed for `team_id` (also a workspace of an Enterprise Grid org, whose
        installation carries an enterprise id the thread key does not), or None when not installed."""
        return await self._newest_bot(self.bots.c.bot_token, team_id)

    async def bot_user_id(self, team_id: str) -> str | None:
        """The bot's user id in `team_id` as its newest installation recorded it, or None when not installed
        (read for every message taken before Bolt, so an uninstall counts at once)."""
        return await self._newest_bot(self.bots.c.bot_user_id, team_id)

    async def _newest_bot(self, column: sa.Column[Any], team_id: str) -> str | None:
        c = self.bots.c
        query = (
            sa.select(column)
            .where(c.client_id == self.client_id, c.team_id == team_id, c.bot_token.is_not(None))
            .order_by(sa.desc(c.installed_at))
            .limit(1)
        )
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return None if value is None else str(value)

    async def uninstall(self, team_id: str) -> str | None:
        """Delete every installation and bot of `team_id`; returns the bot token that was removed, if any."""
        token = await self.bot_token(team_id)
        async with self.engine.begin() as conn:
            for table in (self.bots, self.installations):
                await conn.execute(
                    table.delete().where(table.c.client_id == self.client_id, table.c.team_id == team_id)
                )
        return token


def installation_store(engine: AsyncEngine, *, client_id: str) -> Installations:
    return Installations(client_id=client_id, engine=engine, logger=log)


def state_store(engine: AsyncEngine) -> AsyncSQLAlchemyOAuthStateStore:
    return AsyncSQLAlchemyOAuthStateStore(expiration_seconds=STATE_EXPIRATION_S, engine=engine, logger=log)


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    installation = args.installation
    log.info("installed in workspace %s (%s)", installation.team_id, installation.team_name)
    return await args.default.success(args)


async def _install_failed(args: AsyncFailureArgs) -> BoltResponse:
    # Bolt's page names the reason (invalid_state, invalid_browser, invalid_code, access_denied, …) and links
    # back to the install page; nothing was stored.
    log.warning("an installation failed: %s", args.reason)
    return await args.default.failure(args)


class _LoggedAuthorize(AsyncInstallationStoreAuthorize):
    """Bolt's authorize from the installation store, naming the workspace when it has no installation
    (Bolt then answers Slack 200 and runs no listener)."""

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        result = await super().__call__(
            context=context,
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            actor_enterprise_id=actor_enterprise_id,
            actor_team_id=actor_team_id,
            actor_user_id=actor_user_id,
        )
        if result is None:
            log.warning("an event from workspace %s, where the app is not installed: ignored", team_id)
        return result


def authorization_url(slack_api_url: str) -> str:
    """Slack's consent page on the host of its Web API: https://slack.com/api/ -> https://slack.com/oauth/v2/authorize."""
    return urljoin(slack_api_url, "../oauth/v2/authorize")


def oauth_settings(
    oauth: OAuth, *, installations: Installations, engine: AsyncEngine, slack_api_url: str
) -> AsyncOAuthSettings:
    """Bolt's settings: `/slack/install` and `/slack/oauth_redirect`, on our database."""
    settings = AsyncOAuthSettings(
        authorization_url=authorization_url(slack_api_url),
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        scopes=list(oauth.scopes),
        user_scopes=[],
        redirect_uri=oauth.redirect_uri,
        installation_store=installations,
        installation_store_bot_only=True,
        state_store=state_store(engine),
        state_expiration_seconds=STATE_EXPIRATION_S,
        callback_options=AsyncCallbackOptions(success=_installed, failure=_install_failed),
        logger=log,
    )
    # Bolt would call auth.test on every event; its result for a token does not change, so cache it.
    settings.authorize = _LoggedAuthorize(
        logger=log,
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        installation_store=installations,
        bot_only=True,
        cache_enabled=True,
    )
    return settings


class Uninstalls:
    """`request(team_id)`: the app was uninstalled from a workspace (or its bot token revoked); in the
    background, delete the installation, then forget every thread of the workspace. Returns at once, so the
    listener acknowledges Slack in time; the tasks are owned here (`close()` awaits or cancels them)."""

    def __init__(
        self,
        *,
        delete_installation: Callable[[str], Awaitable[Any]],
        forget_team: Callable[[str], Awaitable[Any]],
    ) -> None:
        self._delete_installation = delete_installation
        self._forget_team = forget_team
        self._tasks = OwnedTasks()

    def request(self, team_id: str, why: str) -> None:
        log.info("%s in workspace %s: deleting its installation and its data", why, team_id)
        self._tasks.spawn(self._uninstall(team_id), name=f"uninstall-{team_id}")

    async def _uninstall(self, team_id: str) -> None:
        try:
            await self._delete_installation(team_id)
            await self._forget_team(team_id)
        except Exception:  # the database or OpenAI failed: queued deletions are retried by the sweep
            log.exception("forgetting workspace %s after its uninstall failed", team_id)

    async def wait_idle(self) -> None:
        """Wait until every uninstall started so far has finished."""
        await self._tasks.wait_idle()

    async def close(self, *, grace_s: float = 5.0) -> None:
        await self._tasks.close(grace_s=grace_s)
