"""The errors a streamed response reports become ours by code first, by wording only where OpenAI has no code."""

from __future__ import annotations

import pytest

from bot.analysis.openai_errors import stream_error
from bot.errors import BotError, ContainerExpired, OpenAIQuotaExhausted, OpenAIRateLimited, ResponseFailed


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        pytest.param("rate_limit_exceeded", "Rate limit reached for gpt-5.1", OpenAIRateLimited, id="rate-limit-code"),
        pytest.param("insufficient_quota", "You exceeded your current quota", OpenAIQuotaExhausted, id="quota-code"),
        pytest.param(None, "Container is expired.", ContainerExpired, id="expired-container-no-code"),
        pytest.param("server_error", "The server had an error", ResponseFailed, id="server-error"),
        pytest.param(
            "server_error", "rate limit mentioned in words only", ResponseFailed, id="wording-does-not-beat-code"
        ),
        pytest.param(None, "", ResponseFailed, id="nothing-known"),
    ],
)
def test_stream_errors_are_converted_by_code(code: str | None, message: str, expected: type[BotError]) -> None:
    error = stream_error(code, message, request_id="req_1", response_id="resp_1")
    assert type(error) is expected
    assert error.request_id == "req_1"
