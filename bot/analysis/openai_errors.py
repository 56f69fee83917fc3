"""Converts OpenAI's errors into our error tree: SDK exceptions and the errors a stream reports.

The only module that reads OpenAI's error codes, types or wording; codes and types are preferred, and
the message text is read only where OpenAI gives no code (an expired container).
"""

from __future__ import annotations

import re

import openai

from bot.errors import (
    BotError,
    ContainerExpired,
    OpenAIAuthFailed,
    OpenAIBusy,
    OpenAIQuotaExhausted,
    OpenAIRateLimited,
    OpenAIRejected,
    OpenAIUnavailable,
    ResponseFailed,
)
from bot.ops import metrics


def is_conversation_locked(exc: BaseException) -> bool:
    return isinstance(exc, openai.BadRequestError) and exc.code == "conversation_locked"


def is_missing_endpoint(exc: BaseException) -> bool:
    """The server has no such API at all (404 Invalid URL, 405, 501): an OpenAI-compatible gateway may lack
    one that OpenAI has, such as the Uploads API. Only meaningful for a request that names no object."""
    return isinstance(exc, openai.APIStatusError) and exc.status_code in (404, 405, 501)


def mentions_expired_container(message: str) -> bool:
    text = message.lower()
    return "container is expired" in text or "expected container_id" in text or "container expired" in text


def convert(exc: openai.OpenAIError) -> BotError:
    """Our error for an SDK exception, carrying the request id for the log and the user message."""
    request_id = getattr(exc, "request_id", None)
    detail = f"{exc.__class__.__name__}: {getattr(exc, 'message', str(exc))}"
    _count(exc)
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return OpenAIUnavailable(detail, request_id=request_id)
    if not isinstance(exc, openai.APIStatusError):
        return OpenAIUnavailable(detail, request_id=request_id)
    code = exc.code or ""
    if isinstance(exc, openai.RateLimitError):
        if code == "insufficient_quota" or getattr(exc, "type", None) == "insufficient_quota":
            return OpenAIQuotaExhausted(detail, request_id=request_id)
        return OpenAIRateLimited(detail, request_id=request_id)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return OpenAIAuthFailed(detail, request_id=request_id)
    if is_conversation_locked(exc):
        return OpenAIBusy(detail, request_id=request_id)
    if isinstance(exc, openai.BadRequestError) and mentions_expired_container(str(exc.message)):
        return ContainerExpired(detail, request_id=request_id)
    if exc.status_code >= 500 or exc.status_code in (408, 409):
        return OpenAIUnavailable(detail, request_id=request_id)
    return OpenAIRejected(detail, request_id=request_id)


def stream_error(code: str | None, message: str, *, request_id: str | None, response_id: str = "") -> BotError:
    """Our error for a `response.failed` or `error` event of a streamed response."""
    metrics.current().openai_errors.labels(code=code or "unknown").inc()
    if code == "rate_limit_exceeded":
        return OpenAIRateLimited(f"{code}: {message}", request_id=request_id)
    if code == "insufficient_quota":
        return OpenAIQuotaExhausted(f"{code}: {message}", request_id=request_id)
    if mentions_expired_container(message):
        return ContainerExpired(message, request_id=request_id)
    suffix = f" ({response_id})" if response_id else ""
    return ResponseFailed(f"{code or 'unknown'}: {message}{suffix}", request_id=request_id)


def _count(exc: openai.OpenAIError) -> None:
    """`openai_errors_total{code}`: OpenAI's code, else its type, else "connection" / "status_<n>"."""
    if isinstance(exc, openai.APITimeoutError):
        label = "timeout"
    elif isinstance(exc, openai.APIConnectionError):
        label = "connection"
    elif isinstance(exc, openai.APIStatusError):
        label = exc.code or getattr(exc, "type", None) or f"status_{exc.status_code}"
    else:
        label = exc.__class__.__name__
    metrics.current().openai_errors.labels(code=str(label)).inc()


_UNANSWERED_CALL = re.compile(r"No tool output found for function call ([A-Za-z0-9_\-]+)")


def unanswered_function_call(exc: BaseException) -> str | None:
    """The call id of a 400 saying the conversation holds a function call with no output (OpenAI gives no
    code for it, only this wording), e.g. a chart call whose turn was stopped before it was answered."""
    if not isinstance(exc, openai.BadRequestError):
        return None
    match = _UNANSWERED_CALL.search(str(getattr(exc, "message", "") or exc))
    return match.group(1) if match else None
