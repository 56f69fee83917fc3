"""Chart specs against Slack's data_visualization limits (pure: table tests)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.charts import ChartSpecError, chart_block, chart_table, parse_chart, parse_charts


def line(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "line",
        "title": "월별 매출",
        "categories": ["1월", "2월"],
        "series": [{"name": "매출", "values": [1, 2.5]}],
    }
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param(line(type="scatter"), "type must be one of", id="unknown-type"),
        pytest.param(line(title="가" * 51), "at most 50", id="long-title"),
        pytest.param(line(categories=["가" * 21, "b"]), "at most 20", id="long-label"),
        pytest.param(
            line(categories=[str(i) for i in range(21)], series=[{"name": "s", "values": list(range(21))}]),
            "21 categories",
            id="too-many-categories",
        ),
        pytest.param(line(series=[{"name": f"s{i}", "values": [1, 2]} for i in range(7)]), "7 series", id="series"),
        pytest.param(line(series=[{"name": "s", "values": [1]}]), "one number per category", id="ragged"),
        pytest.param(line(series=[{"name": "s", "values": [1, "2"]}]), "finite number", id="not-a-number"),
        pytest.param(line(series=[{"name": "s", "values": [1, float("nan")]}]), "finite number", id="nan"),
        pytest.param(line(type="pie", series=[{"name": "s", "values": [1, 0]}]), "greater than 0", id="pie-zero"),
        pytest.param(
            line(type="pie", series=[{"name": "a", "values": [1, 2]}, {"name": "b", "values": [1, 2]}]),
            "exactly one series",
            id="pie-two-series",
        ),
        pytest.param(
            line(type="pie", categories=[str(i) for i in range(7)], series=[{"name": "s", "values": [1] * 7}]),
            "at most 6",
            id="pie-segments",
        ),
    ],
)
def test_specs_slack_would_refuse_are_refused_with_the_reason(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(ChartSpecError, match=problem):
        parse_chart(spec)


def test_at_most_two_charts_per_message() -> None:
    assert len(parse_charts({"charts": [line(), line()]})) == 2
    with pytest.raises(ChartSpecError, match="at most 2 per message"):
        parse_charts({"charts": [line(), line(), line()]})


@pytest.mark.parametrize(
    ("spec", "chart"),
    [
        pytest.param(
            line(y_label="원"),
            {
                "type": "line",
                "series": [{"name": "매출", "data": [{"label": "1월", "value": 1}, {"label": "2월", "value": 2.5}]}],
                "axis_config": {"categories": ["1월", "2월"], "y_label": "원"},
            },
            id="line",
        ),
        pytest.param(
            line(type="pie"),
            {"type": "pie", "segments": [{"label": "1월", "value": 1}, {"label": "2월", "value": 2.5}]},
            id="pie",
        ),
    ],
)
def test_blocks(spec: dict[str, Any], chart: dict[str, Any]) -> None:
    assert chart_block(parse_chart(spec)) == {"type": "data_visualization", "title": "월별 매출", "chart": chart}


def test_the_text_fallback_is_the_data_as_a_table() -> None:
    assert chart_table(parse_chart(line())) == "*월별 매출*\n|  | 매출 |\n|---|---|\n| 1월 | 1 |\n| 2월 | 2.5 |"
