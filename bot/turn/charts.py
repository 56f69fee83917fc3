"""Native charts in a turn: the `slack_chart` function offered to the model, and each call answered.

A call whose spec breaks Slack's limits is not posted; its output tells the model why, so it draws a PNG
with python instead. A valid call is posted as a message of `data_visualization` blocks with the data as
a Markdown table for the text fallback. When Slack refuses the block (`invalid_blocks`, e.g. a workspace
the block has not reached yet) the data is posted as that Markdown table instead, and the model is told so
(it may still draw a PNG). Either way the model gets a `function_call_output` and continues its answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bot.errors import SlackProblem
from bot.events import FunctionCalled
from bot.slack.charts import (
    CHART_TYPES,
    LABEL_MAX_CHARS,
    MAX_CATEGORIES,
    MAX_CHARTS_PER_MESSAGE,
    MAX_SERIES,
    TITLE_MAX_CHARS,
    ChartSpecError,
    chart_block,
    chart_table,
    parse_charts,
)
from bot.turn.sink import AnswerSink

log = logging.getLogger(__name__)

CHART_FUNCTION = "slack_chart"
# Rounds of function calls in one turn before the model is asked to finish in text.
MAX_CHART_ROUNDS = 3
PNG_INSTEAD = "Nothing was posted. Draw this chart as a PNG with python (matplotlib) instead."

_CHART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(CHART_TYPES)},
        "title": {"type": "string", "maxLength": TITLE_MAX_CHARS},
        "categories": {
            "type": "array",
            "items": {"type": "string", "maxLength": LABEL_MAX_CHARS},
            "description": "x-axis labels; for a pie, the slice labels (at most 6)",
        },
        "series": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": LABEL_MAX_CHARS},
                    "values": {"type": "array", "items": {"type": "number"}},
                },
                "required": ["name", "values"],
            },
            "description": f"at most {MAX_SERIES}; one value per category; a pie takes exactly one",
        },
        "x_label": {"type": "string"},
        "y_label": {"type": "string"},
    },
    "required": ["type", "title", "categories", "series"],
}

CHART_TOOL: dict[str, Any] = {
    "type": "function",
    "name": CHART_FUNCTION,
    "description": (
        "Show a small chart natively in the Slack thread (Slack draws it; Hangul labels work). Line, bar, area "
        f"or pie; at most {MAX_SERIES} series, {MAX_CATEGORIES} categories, labels of at most {LABEL_MAX_CHARS} "
        f"characters, titles of at most {TITLE_MAX_CHARS}; up to {MAX_CHARTS_PER_MESSAGE} charts per call. "
        "Compute the numbers with python first. For anything larger, draw a PNG with matplotlib instead."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "charts": {"type": "array", "items": _CHART_SCHEMA, "minItems": 1, "maxItems": MAX_CHARTS_PER_MESSAGE}
        },
        "required": ["charts"],
    },
}


async def answer_call(call: FunctionCalled, reply: AnswerSink) -> str:
    """Carry out one function call in the thread; returns its output for the model (JSON text)."""
    if call.name != CHART_FUNCTION:
        return json.dumps({"ok": False, "error": f"unknown function {call.name!r}"})
    try:
        charts = parse_charts(json.loads(call.arguments or "{}"))
    except (ChartSpecError, json.JSONDecodeError) as err:
        log.info("slack_chart call %s refused: %s", call.call_id, err)
        return json.dumps(
            {
                "ok": False,
                "error": str(err),
                "next": PNG_INSTEAD,
            },
            ensure_ascii=False,
        )
    tables = "\n\n".join(chart_table(c) for c in charts)
    try:
        await reply.post_blocks(text=tables, blocks=[chart_block(c) for c in charts])
    except SlackProblem as err:
        if err.slack_error not in ("invalid_blocks", "invalid_blocks_format"):
            # The call must still be answered, or the conversation's next request is refused.
            log.warning("could not post a native chart: %s", err.detail)
            return json.dumps(
                {"ok": False, "error": f"Slack did not take the chart ({err.slack_error}).", "next": PNG_INSTEAD}
            )
        log.warning("Slack refused a native chart (%s); posting its data as a table", err.slack_error)
        await reply.notice(tables)
        return json.dumps(
            {
                "ok": False,
                "posted": "table",
                "error": f"Slack refused the native chart ({err.slack_error}); its data was posted as a table.",
                "next": "If a picture is needed, draw it as a PNG with python (matplotlib). Do not call slack_chart "
                "again in this turn.",
            }
        )
    return json.dumps({"ok": True, "posted": len(charts), "next": "The chart is in the thread; do not repeat it."})
