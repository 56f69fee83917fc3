"""Native Slack charts: a chart spec checked against the `data_visualization` block's limits, the block
itself, and its plain-text fallback.

Limits are Slack's documented ones (Block Kit reference, data visualization block): title ≤ 50 characters,
1–6 series (bar/line/area) or 1–6 segments (pie, values > 0), labels ≤ 20 characters, at most two charts per
message; and ≤ 20 categories, as reported by other projects during the rollout (the reference gives none).
Pure code: posting is `ThreadReply.post_blocks`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CHART_TYPES = ("line", "bar", "area", "pie")
TITLE_MAX_CHARS = 50
LABEL_MAX_CHARS = 20
MAX_SERIES = 6
MAX_PIE_SEGMENTS = 6
MAX_CATEGORIES = 20
MAX_CHARTS_PER_MESSAGE = 2


class ChartSpecError(ValueError):
    """A chart spec Slack would refuse; the message says which limit, for the model to act on."""


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class ChartSpec:
    """One chart: `categories` are the x-axis labels (the slices of a pie, whose one series holds the sizes)."""

    type: str
    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    x_label: str = ""
    y_label: str = ""


def _label(value: Any, where: str, *, limit: int = LABEL_MAX_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ChartSpecError(f"{where} must be a non-empty string")
    if len(value) > limit:
        raise ChartSpecError(f"{where} {value!r} has {len(value)} characters (at most {limit})")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ChartSpecError(f"{where} must be a finite number")
    return float(value)


def parse_chart(raw: Any, where: str = "chart") -> ChartSpec:
    """A chart spec from the model's JSON (`type`, `title`, `categories`, `series: [{name, values}]`,
    optional `x_label`/`y_label`); raises `ChartSpecError` naming the first limit it breaks."""
    if not isinstance(raw, Mapping):
        raise ChartSpecError(f"{where} must be an object")
    kind = raw.get("type")
    if kind not in CHART_TYPES:
        raise ChartSpecError(f"{where}.type must be one of {', '.join(CHART_TYPES)}")
    title = _label(raw.get("title"), f"{where}.title", limit=TITLE_MAX_CHARS)
    categories = raw.get("categories")
    if not isinstance(categories, Sequence) or isinstance(categories, str) or not categories:
        raise ChartSpecError(f"{where}.categories must be a non-empty list")
    most = MAX_PIE_SEGMENTS if kind == "pie" else MAX_CATEGORIES
    if len(categories) > most:
        raise ChartSpecError(f"{where} has {len(categories)} categories (at most {most} for a {kind} chart)")
    labels = tuple(_label(c, f"{where}.categories[{i}]") for i, c in enumerate(categories))
    raw_series = raw.get("series")
    if not isinstance(raw_series, Sequence) or isinstance(raw_series, str) or not raw_series:
        raise ChartSpecError(f"{where}.series must be a non-empty list")
    if kind == "pie" and len(raw_series) != 1:
        raise ChartSpecError(f"{where}: a pie chart takes exactly one series")
    if len(raw_series) > MAX_SERIES:
        raise ChartSpecError(f"{where} has {len(raw_series)} series (at most {MAX_SERIES})")
    series = []
    for i, item in enumerate(raw_series):
        at = f"{where}.series[{i}]"
        if not isinstance(item, Mapping):
            raise ChartSpecError(f"{at} must be an object")
        values = item.get("values")
        if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != len(labels):
            raise ChartSpecError(f"{at}.values must hold one number per category ({len(labels)})")
        numbers = tuple(_number(v, f"{at}.values[{j}]") for j, v in enumerate(values))
        if kind == "pie" and any(v <= 0 for v in numbers):
            raise ChartSpecError(f"{at}: pie slices must be greater than 0")
        series.append(Series(_label(item.get("name"), f"{at}.name"), numbers))
    x_label = raw.get("x_label") or ""
    y_label = raw.get("y_label") or ""
    if x_label:
        _label(x_label, f"{where}.x_label", limit=TITLE_MAX_CHARS)
    if y_label:
        _label(y_label, f"{where}.y_label", limit=TITLE_MAX_CHARS)
    return ChartSpec(kind, title, labels, tuple(series), str(x_label), str(y_label))


def parse_charts(raw: Any) -> list[ChartSpec]:
    """The charts of one `slack_chart` call (`{"charts": [...]}`, one message); raises `ChartSpecError`."""
    charts = raw.get("charts") if isinstance(raw, Mapping) else None
    if not isinstance(charts, Sequence) or isinstance(charts, str) or not charts:
        raise ChartSpecError("charts must be a non-empty list")
    if len(charts) > MAX_CHARTS_PER_MESSAGE:
        raise ChartSpecError(f"{len(charts)} charts in one call (at most {MAX_CHARTS_PER_MESSAGE} per message)")
    return [parse_chart(c, f"charts[{i}]") for i, c in enumerate(charts)]


def _value(v: float) -> int | float:
    return int(v) if v.is_integer() else v


def chart_block(spec: ChartSpec) -> dict[str, Any]:
    """The `data_visualization` block for `spec`."""
    if spec.type == "pie":
        pairs = zip(spec.categories, spec.series[0].values, strict=True)
        segments = [{"label": c, "value": _value(v)} for c, v in pairs]
        chart: dict[str, Any] = {"type": "pie", "segments": segments}
    else:
        axis: dict[str, Any] = {"categories": list(spec.categories)}
        if spec.x_label:
            axis["x_label"] = spec.x_label
        if spec.y_label:
            axis["y_label"] = spec.y_label
        series = [
            {
                "name": s.name,
                "data": [{"label": c, "value": _value(v)} for c, v in zip(spec.categories, s.values, strict=True)],
            }
            for s in spec.series
        ]
        chart = {"type": spec.type, "series": series, "axis_config": axis}
    return {"type": "data_visualization", "title": spec.title, "chart": chart}


def chart_table(spec: ChartSpec) -> str:
    """The chart's data as a Markdown table under its title: the text fallback (notifications, clients that
    cannot draw the block) and what is posted instead when Slack refuses the block."""
    head = ["", *(s.name for s in spec.series)]
    rows = [
        [category, *(f"{_value(s.values[i]):,}" for s in spec.series)] for i, category in enumerate(spec.categories)
    ]
    lines = [f"*{spec.title}*", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
