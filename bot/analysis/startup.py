"""OpenAI at start-up: one cheap call that proves the host answers, the key works and the model exists."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import openai

from bot.errors import ConfigError, ServiceUnreachable, describe_connection_failure

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = openai.Timeout(30.0, connect=10.0)


async def check_model(client: openai.AsyncOpenAI, *, model: str) -> None:
    """Retrieve `model` (GET /models/{model}) once.

    Raises `ServiceUnreachable` (OPENAI_BASE_URL) when OpenAI cannot be reached, and `ConfigError`
    naming OPENAI_API_KEY for a rejected key or OPENAI_MODEL for a model the key cannot use. Other
    answers (overload, rate limits) are only logged: they may pass, and turns retry them anyway.
    """
    base_url = str(client.base_url)
    try:
        await client.with_options(max_retries=1, timeout=STARTUP_TIMEOUT).models.retrieve(model)
    except openai.APIConnectionError as exc:  # also APITimeoutError
        raise ServiceUnreachable("OPENAI_BASE_URL", url=base_url, reason=describe_connection_failure(exc)) from None
    except openai.AuthenticationError as exc:
        raise ConfigError(
            "OPENAI_API_KEY",
            f"was rejected by OpenAI ({exc.code or exc.status_code}): create a key at "
            "https://platform.openai.com/api-keys (on Azure, the resource's key)",
        ) from None
    except openai.NotFoundError as exc:
        if _is_azure(base_url):
            # Azure's /models lists base models, not deployment names: a deployment may still work.
            log.warning("Azure OpenAI does not list model %r (%s); starting anyway", model, exc.code)
            return
        raise ConfigError(
            "OPENAI_MODEL",
            f"names a model this key cannot use ({model!r}, {exc.code or exc.status_code}): pick a model that "
            "supports code interpreter, such as gpt-5.1",
        ) from None
    except openai.PermissionDeniedError as exc:
        raise ConfigError(
            "OPENAI_API_KEY",
            f"may not use model {model!r} ({exc.code or exc.status_code}): check the key's project and permissions",
        ) from None
    except openai.APIStatusError as exc:
        log.warning("OpenAI answered %d at start-up (request %s); starting anyway", exc.status_code, exc.request_id)


def _is_azure(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host.endswith((".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"))
