"""Which Web API client (and so which bot token) speaks for a workspace.

A turn, a notice and a file download act in the workspace of their thread (`ThreadKey.team_id`), with that
workspace's bot token: one token for everything in single-workspace mode, the installation's token in OAuth
mode. Turns are also resumed after a restart, long after the event that brought them, so the token is looked
up when the work starts, not carried from the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_sdk.web.async_client import AsyncWebClient

# team_id -> the workspace's bot token, or None when the app is not installed there.
TokenLookup = Callable[[str], Awaitable[str | None]]
# bot token -> a client that sends it (sharing the process's connection pool).
ClientFactory = Callable[[str], AsyncWebClient]


class SlackClients:
    """`for_team(team_id)`: the client for a workspace, or None when the app is not installed there."""

    def __init__(self, *, lookup: TokenLookup, make_client: ClientFactory) -> None:
        self._lookup = lookup
        self._make_client = make_client
        self._by_token: dict[str, AsyncWebClient] = {}

    @classmethod
    def single(cls, client: AsyncWebClient) -> SlackClients:
        """Every workspace (there is one) is answered with `client` and its token."""

        async def lookup(_team_id: str) -> str | None:
            return client.token

        clients = cls(lookup=lookup, make_client=lambda _token: client)
        if client.token:
            clients._by_token[client.token] = client
        return clients

    async def for_team(self, team_id: str) -> AsyncWebClient | None:
        """Asked each time (one indexed query in OAuth mode), so an uninstall seen by another replica
        counts here at once; the client objects are kept per token."""
        token = await self._lookup(team_id)
        if not token:
            return None
        client = self._by_token.get(token)
        if client is None:
            client = self._by_token[token] = self._make_client(token)
        return client

    def forget_token(self, token: str | None) -> None:
        """Drop the client of a revoked token."""
        if token:
            self._by_token.pop(token, None)
