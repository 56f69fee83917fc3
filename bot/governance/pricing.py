"""What a turn cost, estimated in USD from its tokens and the code-interpreter containers it created."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from bot.config import DEFAULT_MODEL, PriceOverrides
from bot.events import Usage

log = logging.getLogger(__name__)

TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True)
class Prices:
    """USD per million tokens, and per container session."""

    input_per_mtok: float
    cached_input_per_mtok: float
    output_per_mtok: float
    container: float


# Token prices of the default model: OpenAI's model page for gpt-5.1
# (https://developers.openai.com/api/docs/models/gpt-5.1, read 2026-11-25): $1.25 input, $0.125 cached
# input, $10.00 output per million tokens (standard tier).
# Container prices: ../shared/reference/openai-api.md §5 (secondary source, to be confirmed on
# openai.com/api/pricing): $0.03 per 1 GB for 20 minutes, $0.12 for 4 GB, $1.92 for 64 GB, i.e.
# $0.0015 per GB-minute, billed per minute with a 5-minute minimum. A container of ours lives until
# 20 idle minutes have passed (`CONTAINER_IDLE_MINUTES`), so a session is priced as 20 minutes of
# the configured memory tier.
CONTAINER_SESSION_USD = {"1g": 0.03, "4g": 0.12, "16g": 0.48, "64g": 1.92}
BUILT_IN_TOKEN_PRICES: dict[str, tuple[float, float, float]] = {DEFAULT_MODEL: (1.25, 0.125, 10.00)}
# `gpt-5.1-2025-11-13` is a snapshot of `gpt-5.1`, priced the same.
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _known_model(model: str) -> str | None:
    """The built-in table's name for `model` (a dated snapshot maps to its alias), or None."""
    base = _SNAPSHOT.sub("", model)
    return base if base in BUILT_IN_TOKEN_PRICES else None


class Pricing:
    """Prices turns for one bot: the built-in table for the default model, each rate replaceable by
    `PriceOverrides`. An unknown model without a full override is priced at the default model's rates;
    that is logged once per model."""

    def __init__(self, overrides: PriceOverrides | None = None, *, container_memory_limit: str = "4g") -> None:
        self._overrides = overrides or PriceOverrides()
        self._container_memory_limit = container_memory_limit
        self._warned: set[str] = set()

    def prices(self, model: str | None) -> Prices:
        """The rates a turn of `model` is charged at (None: the default model)."""
        o = self._overrides
        name = model or DEFAULT_MODEL
        known = _known_model(name)
        tokens_overridden = None not in (o.input_per_mtok, o.cached_input_per_mtok, o.output_per_mtok)
        if known is None and not tokens_overridden and name not in self._warned:
            self._warned.add(name)
            log.warning(
                "no built-in prices for model %s: estimating its cost at %s rates "
                "(set OPENAI_PRICE_INPUT_PER_MTOK, OPENAI_PRICE_CACHED_INPUT_PER_MTOK, OPENAI_PRICE_OUTPUT_PER_MTOK)",
                name,
                DEFAULT_MODEL,
            )
        built_in = BUILT_IN_TOKEN_PRICES[known or DEFAULT_MODEL]
        return Prices(
            input_per_mtok=_pick(o.input_per_mtok, built_in[0]),
            cached_input_per_mtok=_pick(o.cached_input_per_mtok, built_in[1]),
            output_per_mtok=_pick(o.output_per_mtok, built_in[2]),
            container=_pick(o.container, CONTAINER_SESSION_USD.get(self._container_memory_limit, 0.12)),
        )

    def cost_usd(self, model: str | None, usage: Usage, *, containers_created: int = 0) -> float:
        """Estimated USD for `usage` of `model` plus `containers_created` container sessions."""
        return estimate_cost(self.prices(model), usage, containers_created=containers_created)


def estimate_cost(prices: Prices, usage: Usage, *, containers_created: int = 0) -> float:
    """USD for `usage` at `prices`: uncached input, cached input and output tokens (reasoning tokens are
    part of the output tokens and billed with them), plus one session per container created."""
    cached = min(max(usage.cached_input_tokens, 0), max(usage.input_tokens, 0))
    uncached = max(usage.input_tokens, 0) - cached
    tokens = (
        uncached * prices.input_per_mtok
        + cached * prices.cached_input_per_mtok
        + max(usage.output_tokens, 0) * prices.output_per_mtok
    ) / TOKENS_PER_MTOK
    return tokens + containers_created * prices.container


def _pick(override: float | None, built_in: float) -> float:
    return built_in if override is None else override
