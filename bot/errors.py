"""One error tree for everything a user or operator can meet.

    BotError                      (message_key: the i18n key shown in the thread)
    ├── ConfigError               start-up only: names the variable; never reaches Slack
    │   └── ServiceUnreachable    Slack or OpenAI could not be reached at start-up (DNS, refused, proxy)
    ├── DatabaseUnavailable       start-up only: the database cannot be reached or is newer than the bot
    ├── FileProblem               one file could not be used; the turn goes on without it
    │   ├── FileDownloadFailed
    │   ├── FileTooLarge
    │   ├── FileIsHtml            Slack answered with a sign-in page (missing files:read)
    │   ├── FileUnavailable       deleted or hidden by plan limits
    │   ├── FileExternal          a link to Google Drive, Dropbox, …: no bytes in Slack
    │   ├── FileEmpty
    │   ├── FileMissing           a local file (python -m bot ask) is not there or cannot be read
    │   ├── FileUnsupported       a format code interpreter cannot read
    │   ├── FileUploadFailed      OpenAI refused or failed the upload
    │   └── ThreadFileLimit       the thread already holds the most files or bytes allowed
    ├── OpenAIProblem             the turn cannot be answered by OpenAI
    │   ├── OpenAIRateLimited     429 rate_limit_exceeded, after retries
    │   ├── OpenAIQuotaExhausted  429 insufficient_quota: retries cannot help
    │   ├── OpenAIAuthFailed      401/403: the key is wrong or lacks access
    │   ├── OpenAIUnavailable     5xx, connection errors, timeouts, after retries
    │   ├── OpenAIBusy            conversation_locked that did not clear
    │   ├── OpenAIRejected        400 we did not expect (bad request, model unsupported, …)
    │   ├── ContainerExpired      the code interpreter container died (recovered, not shown)
    │   ├── ResponseFailed        the response ended `failed` or with an `error` event
    │   └── ResponseIncomplete    the response ended `incomplete` (text kept)
    ├── BudgetExhausted           a spending limit is used up: the turn is refused before any OpenAI call
    ├── SlackProblem              Slack refused a call that carries the answer
    └── StoreUnavailable          the database did not answer (retried; never shown for a finished answer)

Vendor exceptions are converted at the boundary (`analysis/`, `slack/reply.py`, `turn/intake.py`); the
rest of the code only sees these types. The single place that turns a `BotError` into a Slack message is
`turn.conductor.Conductor._report`.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit


class BotError(Exception):
    """Base of every error the bot knows how to explain to a user."""

    message_key = "error.unexpected"

    def __init__(self, detail: str = "", *, request_id: str | None = None, **params: str) -> None:
        super().__init__(detail or self.__class__.__name__)
        self.detail = detail
        self.request_id = request_id
        self.params = params


class ConfigError(BotError):
    """A missing or malformed setting; stops the process at start-up."""

    headline = "configuration error"

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable


class ServiceUnreachable(ConfigError):
    """Slack or OpenAI did not answer at all at start-up: names the host and what to check."""

    headline = "start-up error"

    def __init__(self, variable: str, *, url: str, reason: str) -> None:
        self.host = urlsplit(url).hostname or url
        super().__init__(variable, f"cannot reach {self.host}")
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"cannot reach {self.host} ({self.reason}): check the network connection, the proxy settings "
            f"(HTTPS_PROXY) and {self.variable}"
        )


def describe_connection_failure(exc: BaseException) -> str:
    """A few words on why a connection failed, from the exception and its causes (no URLs, no secrets)."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    for err in seen:
        if "Proxy" in type(err).__name__:
            return "the proxy refused the connection"
    for err in seen:
        if isinstance(err, socket.gaierror):
            return "the host name could not be resolved"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, ssl.SSLError):
            return "the TLS handshake failed"
        if isinstance(err, TimeoutError) or "Timeout" in type(err).__name__:
            return "timed out"
    return type(exc).__name__


class DatabaseUnavailable(BotError):
    """The database cannot be reached, or records a schema revision this bot does not know."""


class FileProblem(BotError):
    """A file shared in the thread could not be handed to code interpreter."""

    message_key = "file.download_failed"

    def __init__(self, filename: str, detail: str = "", *, request_id: str | None = None, **params: str) -> None:
        super().__init__(detail, request_id=request_id, filename=filename, **params)
        self.filename = filename


class FileDownloadFailed(FileProblem):
    message_key = "file.download_failed"


class FileTooLarge(FileProblem):
    message_key = "file.too_large"


class FileIsHtml(FileProblem):
    message_key = "file.html_instead_of_file"


class FileUnavailable(FileProblem):
    message_key = "file.unavailable"


class FileExternal(FileProblem):
    message_key = "file.external"


class FileEmpty(FileProblem):
    message_key = "file.empty"


class FileUnsupported(FileProblem):
    message_key = "file.unsupported"


class FileUploadFailed(FileProblem):
    message_key = "file.upload_failed"


class ThreadFileLimit(FileProblem):
    message_key = "file.thread_limit"


class OpenAIProblem(BotError):
    message_key = "openai.unavailable"


class OpenAIRateLimited(OpenAIProblem):
    message_key = "openai.rate_limited"


class OpenAIQuotaExhausted(OpenAIProblem):
    message_key = "openai.quota"


class OpenAIAuthFailed(OpenAIProblem):
    message_key = "openai.auth"


class OpenAIUnavailable(OpenAIProblem):
    message_key = "openai.unavailable"


class OpenAIBusy(OpenAIProblem):
    message_key = "openai.busy"


class OpenAIRejected(OpenAIProblem):
    message_key = "openai.rejected"


class ContainerExpired(OpenAIProblem):
    """The code interpreter container died; the conductor recovers by starting a new one."""

    message_key = "openai.unavailable"


class ResponseFailed(OpenAIProblem):
    message_key = "openai.failed"


class ResponseIncomplete(OpenAIProblem):
    message_key = "openai.incomplete"


class BudgetExhausted(BotError):
    """A spending limit (`scope`: user_daily, channel_daily or team_monthly) is used up.

    `amount` is the limit in USD and `resets` when it starts again (UTC), both as shown to the user.
    """

    def __init__(self, scope: str, detail: str = "", *, amount: str, resets: str) -> None:
        super().__init__(detail or f"{scope} budget exhausted", amount=amount, resets=resets)
        self.scope = scope
        self.message_key = f"budget.exhausted_{scope}"


class SlackProblem(BotError):
    message_key = "slack.failed"

    def __init__(self, detail: str = "", *, slack_error: str = "", **params: str) -> None:
        super().__init__(detail, **params)
        self.slack_error = slack_error


class StoreUnavailable(BotError):
    """The database refused or dropped a call; the caller retries or leaves the turn to be claimed again."""

    message_key = "error.unexpected"


class FileMissing(FileProblem):
    """A local file named on the command line does not exist or cannot be read (`python -m bot ask`)."""

    message_key = "file.missing"
