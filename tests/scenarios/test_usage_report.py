"""`python -m bot usage`: the spending report from the bot's own database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot import cli
from bot.store import Store
from bot.store.store import turns
from tests.conftest import postgres_database

ROOT = Path(__file__).resolve().parents[2]


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# (team, channel, user, model, created, status, input, cached, output, reasoning, containers, bytes, cost)
TURNS = [
    ("T1", "C1", "U1", "gpt-5.1", "2026-11-24T10:00", "done", 1000, 100, 200, 50, 1, 2_000_000, 0.5),
    ("T1", "C2", "U2", "gpt-5.1", "2026-11-25T23:59", "done", 3000, 0, 100, 0, 0, 0, 0.25),
    ("T2", "C3", "U1", "gpt-test", "2026-11-25T00:00", "failed", 0, 0, 0, 0, 1, 500_000, 0.12),
    ("T1", "C1", "U1", None, "2026-11-25T12:00", "pending", None, 0, None, 0, 0, 0, None),  # not finished
]


async def seed(url: str) -> None:
    store = await Store.open(url)
    try:
        async with store.engine.begin() as conn:
            for n, row in enumerate(TURNS):
                team, channel, user, model, created, status, inp, cached, out, reasoning, cont, size, cost = row
                await conn.execute(
                    sa.insert(turns).values(
                        team_id=team,
                        channel=channel,
                        ts=f"1.{n}",
                        thread_ts=f"1.{n}",
                        user_id=user,
                        text="q",
                        status=status,
                        model=model,
                        input_tokens=inp,
                        cached_input_tokens=cached,
                        output_tokens=out,
                        reasoning_tokens=reasoning,
                        containers_created=cont,
                        bytes_uploaded=size,
                        cost_usd=cost,
                        created_at=at(created),
                        updated_at=at(created),
                    )
                )
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        await seed(url)
        yield url
    else:
        async with postgres_database() as url:
            await seed(url)
            yield url


def report(argv: list[str], url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("DATABASE_URL", url)
    assert cli.main(["usage", *argv]) == 0
    return capsys.readouterr().out


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("by", "keys"),
    [
        pytest.param("user", ["U1", "U2"], id="user"),
        pytest.param("channel", ["C1", "C2", "C3"], id="channel"),
        pytest.param("team", ["T1", "T2"], id="team"),
        pytest.param("day", ["2026-11-24", "2026-11-25"], id="day"),
        pytest.param("model", ["gpt-5.1", "gpt-test"], id="model"),
    ],
)
async def test_each_grouping_as_csv_with_totals_last(
    database: str, by: str, keys: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = await asyncio.to_thread(report, ["--by", by, "--format", "csv"], database, monkeypatch, capsys)
    rows = csv_rows(out)
    assert rows[0] == [
        by,
        "turns",
        "input",
        "cached input",
        "output",
        "reasoning",
        "containers",
        "MB uploaded",
        "cost USD",
    ]
    assert [r[0] for r in rows[1:]] == [*keys, "total"]
    assert rows[-1] == ["total", "3", "4000", "100", "300", "50", "2", "2.50", "0.8700"], "the pending turn is left out"


async def test_json_and_the_date_range(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = await asyncio.to_thread(
        report, ["--by", "user", "--format", "json", "--since", "2026-11-25"], database, monkeypatch, capsys
    )
    data = json.loads(out)
    assert [(r["user"], r["turns"], r["cost_usd"]) for r in data["rows"]] == [("U1", 1, 0.12), ("U2", 1, 0.25)]
    assert data["total"]["turns"] == 2 and data["total"]["cost_usd"] == pytest.approx(0.37)
    out = await asyncio.to_thread(report, ["--until", "2026-11-24", "--format", "json"], database, monkeypatch, capsys)
    assert [(r["day"], r["turns"]) for r in json.loads(out)["rows"]] == [("2026-11-24", 1)]


async def test_the_default_is_an_aligned_table_by_day_from_a_real_process(database: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "usage"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = "day  turns  input  cached input  output  reasoning  containers  MB uploaded  cost USD"
    assert " ".join(lines[0].split()) == " ".join(header.split())
    assert lines[2].split() == ["2026-11-24", "1", "1000", "100", "200", "50", "1", "2.00", "0.5000"]
    assert lines[-1].split()[0] == "total" and lines[-2].startswith("---")
    assert len({len(line) for line in lines[:2]}) == 1, "header and rule line up"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        pytest.param(["--by", "week"], "argument --by: invalid choice: 'week'", id="unknown-by"),
        pytest.param(["--since", "2026-13-01"], "argument --since: expected a date as YYYY-MM-DD", id="bad-month"),
        pytest.param(["--until", "yesterday"], "argument --until: expected a date as YYYY-MM-DD", id="not-a-date"),
        pytest.param(["--since", "2026-11-25", "--until", "2026-11-24"], "--until is before --since", id="reversed"),
        pytest.param(["--format", "xml"], "argument --format: invalid choice: 'xml'", id="unknown-format"),
    ],
)
def test_bad_input_prints_a_usage_line_and_exits_2(
    argv: list[str], complaint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'none.sqlite3'}")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["usage", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m bot usage")
    assert complaint in err
