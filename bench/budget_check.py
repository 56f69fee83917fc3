"""What the budget check adds to a turn: p50/p99 of `BudgetGuard.ensure_within` over a database holding
100,000 finished turns, beside a floor (`SELECT 1` through the same engine).

    .venv/bin/python -m bench.budget_check                         # SQLite in a temporary directory
    .venv/bin/python -m bench.budget_check --database postgresql   # a fresh database on 127.0.0.1:5432

The turns are spread like a busy install: 3 workspaces, 60 channels, 600 users, the last 90 days, so a
workspace's month holds about 11,000 of them. All three budgets are set (none exhausted), so each check
sums all three scopes in its one round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa

from bot.config import AccessPolicy, Budgets
from bot.domain import ThreadKey, Turn
from bot.governance.access import allowed, follow_up_rule, is_question
from bot.governance.budgets import BudgetGuard
from bot.store import Store
from bot.store.store import spend_periods
from bot.store.tables import spend_totals, turns
from bot.store.usage import UsageLedger

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEAMS, CHANNELS, USERS, DAYS = 3, 60, 600, 90
BATCH = 10_000


@asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        return
    import asyncpg

    name = f"bench_budget_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def who(rng: random.Random) -> tuple[str, str, str]:
    team = rng.randrange(TEAMS)
    channel = team * (CHANNELS // TEAMS) + rng.randrange(CHANNELS // TEAMS)
    user = team * (USERS // TEAMS) + rng.randrange(USERS // TEAMS)
    return f"T{team:04d}", f"C{channel:05d}", f"U{user:05d}"


async def fill(store: Store, rows: int, rng: random.Random) -> None:
    """`rows` finished turns, and their sums in `spend_totals` as `Store.finish_turn` keeps them."""
    now = time.time()
    totals: dict[tuple[str, str, str, str], float] = {}
    async with store.engine.begin() as conn:
        for start in range(0, rows, BATCH):
            batch = []
            for n in range(start, min(start + BATCH, rows)):
                team, channel, user = who(rng)
                created = now - rng.random() * DAYS * 86400
                cost = rng.random() * 0.05
                day, month = spend_periods(created)
                for key in (("user", team, user, day), ("channel", team, channel, day), ("team", team, team, month)):
                    totals[key] = totals.get(key, 0.0) + cost
                batch.append(
                    dict(
                        team_id=team,
                        channel=channel,
                        ts=f"{created:.6f}.{n}",
                        thread_ts=f"{created:.6f}",
                        user_id=user,
                        text="q",
                        status="done",
                        model="gpt-5.1",
                        input_tokens=rng.randrange(1_000, 40_000),
                        output_tokens=rng.randrange(100, 4_000),
                        cost_usd=cost,
                        created_at=created,
                        updated_at=created,
                    )
                )
            await conn.execute(sa.insert(turns), batch)
        await conn.execute(
            sa.insert(spend_totals),
            [dict(scope=k[0], team_id=k[1], key=k[2], period=k[3], cost_usd=v) for k, v in totals.items()],
        )
    if store.engine.dialect.name == "postgresql":
        async with store.engine.connect() as conn:
            await (await conn.get_raw_connection()).driver_connection.execute("VACUUM ANALYZE")  # type: ignore[union-attr]
    else:
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE"))


def time_access_decision(checks: int) -> list[float]:
    """Milliseconds per message for the access decision (question? allowed? follow-up rule?), with a
    5,000-user allow list: it runs before a message is recorded, so it adds to every turn."""
    ids = frozenset(f"U{i:08d}" for i in range(5_000))
    policy = AccessPolicy(
        teams=frozenset({"T1"}), channels=frozenset({"C1"}), users=ids | {"U1"}, follow_ups="participants"
    )
    texts = ["<@UBOT> 지역별 매출 합계를 월별로 보여줘", "thanks 👍", ":+1:", "and by week?" * 50]
    durations = []
    for i in range(checks):
        started = time.perf_counter()
        if is_question(texts[i % len(texts)], has_files=False) and allowed(
            policy, team_id="T1", channel="C1", user_id="U1", is_dm=False
        ):
            follow_up_rule(policy.follow_ups, is_dm=False)
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(kind: str, rows: int, checks: int) -> None:
    rng = random.Random(7)
    async with database(kind) as url:
        store = await Store.open(url)
        try:
            await fill(store, rows, rng)
            guard = BudgetGuard(
                Budgets(user_daily_usd=1e6, channel_daily_usd=1e6, team_monthly_usd=1e9),
                spending=UsageLedger(store.engine),
            )
            check_ms: list[float] = []
            floor_ms: list[float] = []
            for n in range(checks + 50):
                team, channel, user = who(rng)
                turn = Turn(id=0, thread=ThreadKey(team, channel, "1.0"), ts="1.0", user_id=user, text="q")
                started = time.perf_counter()
                await guard.ensure_within(turn)
                elapsed = (time.perf_counter() - started) * 1000
                started = time.perf_counter()
                async with store.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
                floor = (time.perf_counter() - started) * 1000
                if n >= 50:  # warm-up
                    check_ms.append(elapsed)
                    floor_ms.append(floor)
        finally:
            await store.close()
    access_ms = time_access_decision(checks)
    print(f"{kind}: {rows:,} turns, {checks} checks (all three budgets set)")
    print("             p50       p99      mean")
    for label, values in (("budget check", check_ms), ("floor SELECT 1", floor_ms), ("access check", access_ms)):
        p50, p99, mean = percentile(values, 50), percentile(values, 99), statistics.fmean(values)
        print(f"{label:<14} {p50:6.2f} ms {p99:6.2f} ms {mean:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=2_000)
    args = parser.parse_args()
    asyncio.run(measure(args.database, args.rows, args.checks))


if __name__ == "__main__":
    main()
