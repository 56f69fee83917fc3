"""Slack at start-up: who the bot is (auth.test) and the Socket Mode URL, with rejected tokens and
unreachable hosts turned into one clear `ConfigError` each."""

from __future__ import annotations

import asyncio

import aiohttp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError, ServiceUnreachable, describe_connection_failure

# Errors of a call made with a token Slack does not accept (revoked, mistyped, wrong kind).
REJECTED_TOKEN_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "not_allowed_token_type"}
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError)


def unreachable(client: AsyncWebClient, exc: BaseException) -> ServiceUnreachable:
    """The start-up error for a Slack Web API host that did not answer at all."""
    return ServiceUnreachable("SLACK_API_URL", url=client.base_url, reason=describe_connection_failure(exc))


class BotIdentity:
    """Who the bot is (auth.test), asked once and cached; Bolt's `authorize` function.

    Bolt's own single-workspace authorization caches auth.test only after the first call returns,
    so a burst of first events would each call it.
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._result: AuthorizeResult | None = None

    async def result(self) -> AuthorizeResult:
        """The cached auth.test result (asked on first use, once however many callers wait)."""
        if self._result is None:
            async with self._lock:
                if self._result is None:
                    response = await self._client.auth_test()
                    self._result = AuthorizeResult.from_auth_test_response(
                        auth_test_response=response, bot_token=self._client.token
                    )
        return self._result

    @property
    def known(self) -> bool:
        """True once Slack accepted the bot token (auth.test answered)."""
        return self._result is not None

    async def check(self) -> None:
        """Ask Slack once at start-up. Raises `ConfigError` for a rejected bot token and
        `ServiceUnreachable` when Slack's Web API cannot be reached."""
        try:
            await self.result()
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown")
            raise ConfigError(
                "SLACK_BOT_TOKEN",
                f"was rejected by Slack ({error}): copy the Bot User OAuth Token again from the app's "
                "'OAuth & Permissions' page (reinstall the app if it was revoked)",
            ) from None
        except NETWORK_ERRORS as exc:
            raise unreachable(self._client, exc) from None


async def socket_mode_url(client: AsyncWebClient, *, app_token: str) -> str:
    """A fresh Socket Mode websocket URL (apps.connections.open with the app-level token).

    Asked here rather than inside slack_sdk's connect loop, which retries a rejected token every
    10 s for ever. Raises `ConfigError` naming SLACK_APP_TOKEN when Slack rejects it, and
    `ServiceUnreachable` when Slack cannot be reached.
    """
    try:
        response = await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown"))
        if error in REJECTED_TOKEN_ERRORS:
            raise ConfigError(
                "SLACK_APP_TOKEN",
                f"was rejected by Slack ({error}): generate an app-level token with the connections:write "
                "scope again (Slack app → 'Basic Information' → 'App-Level Tokens')",
            ) from None
        raise
    except NETWORK_ERRORS as exc:
        raise unreachable(client, exc) from None
    return str(response["url"])
