"""Spending read back from the stored turns: the budget check's sums and the `usage` report's groups.

Each finished turn carries its usage and estimated cost (`turns.cost_usd`, written when the turn is
recorded, and added to `spend_totals` for the budget check); unfinished turns count as nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.store import spend_periods
from bot.store.tables import spend_totals, turns

GroupBy = Literal["user", "channel", "team", "day", "model"]
GROUP_BY: tuple[GroupBy, ...] = ("user", "channel", "team", "day", "model")


@dataclass(frozen=True)
class UsageRow:
    """Usage of one group of turns (`key`: the user, channel, team, UTC day or model)."""

    key: str
    turns: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    containers_created: int = 0
    bytes_uploaded: int = 0
    cost_usd: float = 0.0


class UsageLedger:
    """Reads spending from the turns table through `engine` (the bot's own, or the `usage` command's)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def spent_usd(
        self, *, team_id: str, channel: str, user_id: str, since: Mapping[str, float]
    ) -> dict[str, float]:
        """USD spent in each scope's current period, in one round trip of at most three key lookups.

        `since` maps scopes (`user_daily`, `channel_daily`, `team_monthly`) to the start of their period
        (epoch seconds); the sums are kept in `spend_totals` as turns are recorded.
        """
        if not since:
            return {}
        wanted: dict[tuple[str, str, str], str] = {}
        for scope, start in since.items():
            day, month = spend_periods(start)
            if scope == "user_daily":
                wanted[("user", user_id, day)] = scope
            elif scope == "channel_daily":
                wanted[("channel", channel, day)] = scope
            elif scope == "team_monthly":
                wanted[("team", team_id, month)] = scope
        c = spend_totals.c
        # One primary-key lookup per scope (an OR of equalities; SQLite does not use the key for a tuple IN).
        query = sa.select(c.scope, c.key, c.period, c.cost_usd).where(
            sa.or_(
                *(
                    sa.and_(c.scope == scope, c.team_id == team_id, c.key == key, c.period == period)
                    for scope, key, period in wanted
                )
            )
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        spent = dict.fromkeys(since, 0.0)
        for row in rows:
            spent[wanted[(row.scope, row.key, row.period)]] = float(row.cost_usd)
        return spent

    async def report(self, *, by: GroupBy, since: float | None = None, until: float | None = None) -> list[UsageRow]:
        """Usage of the finished turns created in [since, until) (epoch seconds), grouped `by`, sorted by key."""
        key = self._group_key(by).label("key")
        columns: list[Any] = [
            key,
            sa.func.count().label("turns"),
            *(
                sa.func.coalesce(sa.func.sum(turns.c[name]), 0).label(name)
                for name in (
                    "input_tokens",
                    "cached_input_tokens",
                    "output_tokens",
                    "reasoning_tokens",
                    "containers_created",
                    "bytes_uploaded",
                )
            ),
            sa.func.coalesce(sa.func.sum(turns.c.cost_usd), 0.0).label("cost_usd"),
        ]
        query = sa.select(*columns).where(turns.c.status.in_(("done", "failed")))
        if since is not None:
            query = query.where(turns.c.created_at >= since)
        if until is not None:
            query = query.where(turns.c.created_at < until)
        query = query.group_by(key).order_by(key)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            UsageRow(
                key=str(r.key or "-"),
                turns=int(r.turns),
                input_tokens=int(r.input_tokens),
                cached_input_tokens=int(r.cached_input_tokens),
                output_tokens=int(r.output_tokens),
                reasoning_tokens=int(r.reasoning_tokens),
                containers_created=int(r.containers_created),
                bytes_uploaded=int(r.bytes_uploaded),
                cost_usd=float(r.cost_usd),
            )
            for r in rows
        ]

    def _group_key(self, by: GroupBy) -> sa.ColumnElement[Any]:
        if by == "user":
            return turns.c.user_id
        if by == "channel":
            return turns.c.channel
        if by == "team":
            return turns.c.team_id
        if by == "model":
            return sa.func.coalesce(turns.c.model, "")
        # The UTC day of `created_at` (epoch seconds), as YYYY-MM-DD, in the database's own dialect.
        if self._engine.dialect.name == "postgresql":
            day = sa.func.timezone("UTC", sa.func.to_timestamp(turns.c.created_at))
            return sa.func.to_char(day, "YYYY-MM-DD")
        return sa.func.strftime("%Y-%m-%d", turns.c.created_at, "unixepoch")


def total(rows: list[UsageRow]) -> UsageRow:
    """The sum of `rows`, keyed `total`."""
    return UsageRow(
        key="total",
        turns=sum(r.turns for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        cached_input_tokens=sum(r.cached_input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        reasoning_tokens=sum(r.reasoning_tokens for r in rows),
        containers_created=sum(r.containers_created for r in rows),
        bytes_uploaded=sum(r.bytes_uploaded for r in rows),
        cost_usd=sum(r.cost_usd for r in rows),
    )
