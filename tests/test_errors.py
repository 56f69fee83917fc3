"""The start-up error for an unreachable service: a few words on why, the host, what to check."""

from __future__ import annotations

import socket
import ssl

import pytest

from bot.errors import ServiceUnreachable, describe_connection_failure


def caused(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


class ClientProxyConnectionError(OSError):
    """Named like aiohttp's; only the name matters."""


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        pytest.param(
            caused(OSError("x"), socket.gaierror(-2, "Name or service not known")), "could not be resolved", id="dns"
        ),
        pytest.param(
            caused(RuntimeError("Connection error."), ConnectionRefusedError(111, "refused")),
            "connection refused",
            id="refused",
        ),
        pytest.param(ClientProxyConnectionError("proxy"), "proxy refused", id="proxy"),
        pytest.param(
            caused(ClientProxyConnectionError("p"), ConnectionRefusedError()), "proxy refused", id="proxy-first"
        ),
        pytest.param(TimeoutError(), "timed out", id="timeout"),
        pytest.param(caused(OSError(), ssl.SSLCertVerificationError("bad cert")), "TLS handshake failed", id="tls"),
        pytest.param(ValueError("odd"), "ValueError", id="unknown"),
    ],
)
def test_describe_connection_failure(exc: BaseException, words: str) -> None:
    assert words in describe_connection_failure(exc)


def test_unreachable_names_host_variable_and_what_to_check() -> None:
    err = ServiceUnreachable("SLACK_API_URL", url="https://slack.com/api/", reason="timed out")
    assert str(err) == (
        "cannot reach slack.com (timed out): check the network connection, the proxy settings (HTTPS_PROXY) "
        "and SLACK_API_URL"
    )
    assert err.variable == "SLACK_API_URL" and err.headline == "start-up error"
