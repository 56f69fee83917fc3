"""The terminal's answer text: sandbox links point at the saved files, also when a link arrives in pieces."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.terminal.sink import TerminalSink, local_links

OUT = Path("analysis-output")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("See [the chart](sandbox:/mnt/data/a.png).", f"See the chart ({OUT / 'a.png'}).", id="link"),
        pytest.param("![월별 매출](sandbox:/mnt/data/m.png)", f"월별 매출 ({OUT / 'm.png'})", id="image"),
        pytest.param("[](sandbox:/mnt/data/t.csv)", str(OUT / "t.csv"), id="no-label"),
        pytest.param("saved to sandbox:/mnt/data/r.csv", f"saved to {OUT / 'r.csv'}", id="bare"),
        pytest.param("no links here", "no links here", id="plain"),
    ],
)
def test_local_links(text: str, expected: str) -> None:
    assert local_links(text, out_dir=OUT) == expected


async def test_a_link_split_across_deltas_is_never_shown_raw() -> None:
    out, err = io.StringIO(), io.StringIO()
    sink = TerminalSink(stdout=out, stderr=err, out_dir=OUT)
    for piece in ["Here: [cha", "rt](sand", "box:/mnt/da", "ta/c.png) done"]:
        await sink.write(piece)
        assert "sandbox" not in out.getvalue()
    await sink.flush()
    assert out.getvalue() == f"Here: chart ({OUT / 'c.png'}) done"
    await sink.set_status("is running Python…")
    assert err.getvalue() == "running Python…\n"
