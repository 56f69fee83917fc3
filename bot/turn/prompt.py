"""What a turn sends as the user's input: the thread's files, a note after a reset, and the question."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.domain import ThreadFile, Turn
from bot.turn.chart_font import font_note

RESET_NOTE = (
    "Note: the Python environment was restarted since the last turn; variables and files "
    "you created earlier are gone. Reload the data from the paths above."
)


def describe_files(files: Sequence[ThreadFile], *, new_ids: set[str], paths: Mapping[str, str]) -> str:
    """The file list each turn's input starts with: one line per upload with its container path, its
    original name, who shared it in which message, and its profile.

    `paths` maps the files' upload names (`ThreadFile.filename`, unique in a thread) to container paths;
    a file missing from it is assumed at `/mnt/data/<name>`.
    """
    if not files:
        return "No files have been shared in this thread yet."
    lines = ["Files available to the python tool in this thread:"]
    described: set[str] = set()
    for f in files:
        if f.openai_file_id in described:
            continue  # the same bytes shared again
        described.add(f.openai_file_id)
        marker = " (new this turn)" if f.slack_file_id in new_ids else ""
        path = paths.get(f.filename, f"/mnt/data/{f.filename}")
        lines.append(f"- {path}{marker}: {f.description}")
    return "\n".join(lines)


def turn_input(
    turn: Turn,
    files: Sequence[ThreadFile],
    *,
    new_ids: set[str],
    paths: Mapping[str, str],
    reset: bool,
    font_path: str | None = None,
) -> str:
    """The input text of `turn`: files, the chart font (where it is and how to register it; in the input so
    that a custom BOT_INSTRUCTIONS keeps it), after a container reset a reload note, then the question."""
    parts = [describe_files(files, new_ids=new_ids, paths=paths)]
    if font_path:
        parts.append(font_note(font_path))
    if reset:
        parts.append(RESET_NOTE)
    parts.append(f"Question from the Slack user:\n{turn.question or '(no text; look at the new files)'}")
    return "\n\n".join(parts)
