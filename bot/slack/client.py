"""The Web API client the bot uses: slack_sdk's, counting failed calls in one place.

Every call goes through `api_call`, and every failure slack_sdk reports (after its retry handlers gave
up) is a `SlackApiError` raised from there: counting it here covers reply, intake, notices and start-up
alike, without each caller remembering to.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.ops import metrics


class CountingWebClient(AsyncWebClient):
    """`AsyncWebClient` that counts `slack_analyst_slack_api_errors_total{method,error}`."""

    async def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> AsyncSlackResponse:
        try:
            return await super().api_call(api_method, *args, **kwargs)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code) if exc.response else "unknown"
            metrics.current().slack_api_errors.labels(method=api_method, error=error).inc()
            raise
