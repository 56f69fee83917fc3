"""Pure parts of spending: prices and cost, UTC periods, the 80 % crossing, amounts for people."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from bot.config import Budgets, PriceOverrides
from bot.events import Usage
from bot.governance.budgets import crosses_warning, day_period, format_reset, format_usd, limits, month_period
from bot.governance.pricing import Prices, Pricing, estimate_cost

GPT_51 = Prices(input_per_mtok=1.25, cached_input_per_mtok=0.125, output_per_mtok=10.0, container=0.12)


@pytest.mark.parametrize(
    ("usage", "containers", "expected"),
    [
        pytest.param(Usage(), 0, 0.0, id="nothing"),
        pytest.param(Usage(input_tokens=1_000_000), 0, 1.25, id="input"),
        pytest.param(Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000), 0, 0.125, id="all-cached"),
        pytest.param(Usage(input_tokens=1_000_000, cached_input_tokens=400_000), 0, 0.8, id="part-cached"),
        pytest.param(Usage(output_tokens=1_000_000, reasoning_tokens=900_000), 0, 10.0, id="reasoning-is-output"),
        pytest.param(Usage(), 2, 0.24, id="two-containers"),
        pytest.param(Usage(input_tokens=10, cached_input_tokens=50), 0, 10 * 0.125 / 1e6, id="cached-capped"),
    ],
)
def test_estimate_cost(usage: Usage, containers: int, expected: float) -> None:
    assert estimate_cost(GPT_51, usage, containers_created=containers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "overrides", "memory", "expected", "logs_unknown"),
    [
        pytest.param("gpt-5.1", PriceOverrides(), "4g", GPT_51, False, id="default-model"),
        pytest.param("gpt-5.1-2025-11-13", PriceOverrides(), "4g", GPT_51, False, id="dated-snapshot"),
        pytest.param("gpt-5.1", PriceOverrides(), "1g", Prices(1.25, 0.125, 10.0, 0.03), False, id="1g-container"),
        pytest.param("my-deployment", PriceOverrides(), "4g", GPT_51, True, id="unknown-at-default-rates"),
        pytest.param(
            "my-deployment",
            PriceOverrides(input_per_mtok=2, cached_input_per_mtok=0.2, output_per_mtok=8, container=0.05),
            "4g",
            Prices(2, 0.2, 8, 0.05),
            False,
            id="unknown-fully-overridden",
        ),
        pytest.param(
            "gpt-5.1", PriceOverrides(output_per_mtok=12), "4g", Prices(1.25, 0.125, 12, 0.12), False, id="one-override"
        ),
    ],
)
def test_prices(
    model: str,
    overrides: PriceOverrides,
    memory: str,
    expected: Prices,
    logs_unknown: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pricing = Pricing(overrides, container_memory_limit=memory)
    with caplog.at_level(logging.WARNING, logger="bot.governance.pricing"):
        assert pricing.prices(model) == expected
        assert pricing.prices(model) == expected
    assert len(caplog.records) == (1 if logs_unknown else 0), "an unknown model is logged once"


@pytest.mark.parametrize(
    ("now", "day", "month"),
    [
        pytest.param(
            datetime(2026, 11, 25, 13, 5, tzinfo=UTC),
            (datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC)),
            (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
            id="midday",
        ),
        pytest.param(
            datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
            (datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
            (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
            id="year-end",
        ),
        pytest.param(
            datetime(2028, 2, 29, 0, 0, tzinfo=UTC),
            (datetime(2028, 2, 29, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
            (datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
            id="leap-day-midnight",
        ),
        pytest.param(
            datetime.fromisoformat("2026-11-26T08:30:00+09:00"),
            (datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC)),
            (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
            id="seoul-morning-is-utc-yesterday",
        ),
    ],
)
def test_periods_are_utc(now: datetime, day: tuple[datetime, datetime], month: tuple[datetime, datetime]) -> None:
    assert day_period(now) == day
    assert month_period(now) == month


@pytest.mark.parametrize(
    ("before", "after", "amount", "crosses"),
    [
        pytest.param(0.0, 0.5, 1.0, False, id="under"),
        pytest.param(0.5, 0.8, 1.0, True, id="exactly-80"),
        pytest.param(0.79, 0.81, 1.0, True, id="across"),
        pytest.param(0.0, 3.0, 1.0, True, id="straight-past-100"),
        pytest.param(0.8, 0.9, 1.0, False, id="already-at-80"),
        pytest.param(0.85, 0.95, 1.0, False, id="already-past"),
    ],
)
def test_the_80_percent_crossing(before: float, after: float, amount: float, crosses: bool) -> None:
    assert crosses_warning(before, after, amount) is crosses


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        pytest.param(0.0, "0.00", id="zero"),
        pytest.param(0.01, "0.01", id="cent"),
        pytest.param(10, "10.00", id="whole"),
        pytest.param(1234.5, "1,234.50", id="thousands"),
        pytest.param(0.004, "0.004", id="under-a-cent"),
    ],
)
def test_format_usd(amount: float, text: str) -> None:
    assert format_usd(amount) == text


def test_only_configured_budgets_are_limits() -> None:
    now = datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
    assert limits(Budgets(), now) == []
    found = limits(Budgets(channel_daily_usd=5, team_monthly_usd=100), now)
    assert [(x.scope, x.amount_usd, format_reset(x.resets)) for x in found] == [
        ("channel_daily", 5, "2026-11-26 00:00 UTC"),
        ("team_monthly", 100, "2026-12-01 00:00 UTC"),
    ]
