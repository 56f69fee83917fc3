"""Spending limits: what a user, a channel and a workspace have spent in the current UTC day or month,
whether a limit is used up (the turn is then refused before any OpenAI call), and the first turn that
takes a limit past 80 %."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from bot.config import Budgets
from bot.domain import Turn
from bot.errors import BudgetExhausted
from bot.i18n import Language, t

log = logging.getLogger(__name__)

Scope = Literal["user_daily", "channel_daily", "team_monthly"]
SCOPES: tuple[Scope, ...] = ("user_daily", "channel_daily", "team_monthly")
WARNING_FRACTION = 0.8


class Spending(Protocol):
    """Where spending is read from (the stored turns; see `bot.store.usage.UsageLedger`)."""

    async def spent_usd(
        self, *, team_id: str, channel: str, user_id: str, since: Mapping[str, float]
    ) -> dict[str, float]: ...


def day_period(now: datetime) -> tuple[datetime, datetime]:
    """The UTC day holding `now`: its start and the next day's start."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def month_period(now: datetime) -> tuple[datetime, datetime]:
    """The UTC month holding `now`: its start and the next month's start."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    )
    return start, following


@dataclass(frozen=True)
class Limit:
    """One configured budget for the period holding the time it was made for."""

    scope: Scope
    amount_usd: float
    starts: datetime
    resets: datetime


def limits(budgets: Budgets, now: datetime) -> list[Limit]:
    """The configured limits (unset ones left out), in `SCOPES` order, for the periods holding `now`."""
    day, month = day_period(now), month_period(now)
    configured: list[tuple[Scope, float | None, tuple[datetime, datetime]]] = [
        ("user_daily", budgets.user_daily_usd, day),
        ("channel_daily", budgets.channel_daily_usd, day),
        ("team_monthly", budgets.team_monthly_usd, month),
    ]
    return [Limit(scope, amount, *period) for scope, amount, period in configured if amount is not None]


def crosses_warning(before_usd: float, after_usd: float, amount_usd: float) -> bool:
    """True when spending went from under 80 % of `amount_usd` to at least 80 % (the first crossing only)."""
    threshold = WARNING_FRACTION * amount_usd
    return before_usd < threshold <= after_usd


def format_usd(amount: float) -> str:
    """An amount for people: two decimals, more only when it would otherwise show as zero (`0.004`)."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"{amount:,.2f}"
    return f"{amount:.6f}".rstrip("0")


def format_reset(when: datetime) -> str:
    """`2026-11-26 00:00 UTC`."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class BudgetGuard:
    """Checks a turn against the configured budgets; reads spending from `spending` at `clock()`."""

    def __init__(self, budgets: Budgets, *, spending: Spending, clock: Callable[[], float] = time.time) -> None:
        self._budgets = budgets
        self._spending = spending
        self._clock = clock

    async def _standing(self, turn: Turn) -> list[tuple[Limit, float]]:
        active = limits(self._budgets, datetime.fromtimestamp(self._clock(), UTC))
        if not active:
            return []
        spent = await self._spending.spent_usd(
            team_id=turn.thread.team_id,
            channel=turn.thread.channel,
            user_id=turn.user_id,
            since={limit.scope: limit.starts.timestamp() for limit in active},
        )
        return [(limit, spent.get(limit.scope, 0.0)) for limit in active]

    async def ensure_within(self, turn: Turn) -> None:
        """Raise `BudgetExhausted` for the first used-up limit of `turn`'s user, channel or workspace.

        Only finished turns count; a turn already running is never cut off by its own spending.
        """
        for limit, spent in await self._standing(turn):
            if spent >= limit.amount_usd:
                raise BudgetExhausted(
                    limit.scope,
                    f"{limit.scope} budget of {limit.amount_usd} USD used up ({spent:.6f} USD spent)",
                    amount=format_usd(limit.amount_usd),
                    resets=format_reset(limit.resets),
                )

    async def warnings(self, turn: Turn, cost_usd: float, lang: Language) -> list[str]:
        """One line per limit that `turn` (recorded, costing `cost_usd`) took past 80 %; usually none."""
        if cost_usd <= 0:
            return []
        lines = []
        for limit, spent in await self._standing(turn):
            if crosses_warning(spent - cost_usd, spent, limit.amount_usd):
                log.info("turn %s took the %s budget past 80%% (%.6f USD spent)", turn.id, limit.scope, spent)
                lines.append(
                    t(
                        f"budget.warning_{limit.scope}",
                        lang,
                        amount=format_usd(limit.amount_usd),
                        percent=min(int(spent / limit.amount_usd * 100), 999),
                        resets=format_reset(limit.resets),
                    )
                )
        return lines
