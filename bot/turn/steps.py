"""A code-interpreter call as one step of the answer's timeline: its title, from what the code does."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from bot.i18n import Language, t

STEP_TITLE_MAX_CHARS = 80
_COMMENT = re.compile(r"^\s*#+\s*(.*?)\s*$")
_READ = re.compile(r"""read_(?:csv|excel|json|table|parquet)\(\s*(?:[rfb]?)['"]([^'"]+)['"]""")
_CHART_MARKERS = ("plt.", "matplotlib", "seaborn", "sns.", ".plot(")


def step_title(code: str, lang: Language) -> str:
    """The step's title: the code's first comment line, else what it does ("Reading reviews.csv",
    "Drawing a chart", "Running Python"), cut to `STEP_TITLE_MAX_CHARS`."""
    for line in code.splitlines():
        match = _COMMENT.match(line)
        if match is None:
            if line.strip():
                break  # only a comment before the first statement describes the whole call
            continue
        if match.group(1) and not match.group(1).startswith("!"):
            return _cut(match.group(1))
    if any(marker in code for marker in _CHART_MARKERS):
        return t("step.drawing_chart", lang)
    if (read := _READ.search(code)) is not None:
        return _cut(t("step.reading", lang, filename=PurePosixPath(read.group(1)).name))
    return t("step.running_python", lang)


def _cut(title: str) -> str:
    return title if len(title) <= STEP_TITLE_MAX_CHARS else title[: STEP_TITLE_MAX_CHARS - 1] + "…"
