"""A local file (named on the command line) -> the same checks, encoding and profile as a Slack file.

A spooled Slack file (small, a workbook, or text to convert; big UTF-8 files are streamed instead) is
downloaded into a temporary file and then enters `intake.convert`; a local file enters at that step directly
(nothing is downloaded, nothing is sent anywhere here). Uploading is the caller's next
step, so every file of a command can be checked before any of them reaches OpenAI.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

from bot.domain import SlackFile
from bot.errors import FileEmpty, FileMissing
from bot.turn.intake import CHUNK_BYTES, check_kind_and_size, convert

# The id a local file has in the thread's files: stable for the same bytes, so a file given again in a
# later `ask --session` run is recognised and not uploaded twice.
LOCAL_ID_PREFIX = "local-"


@dataclass(frozen=True)
class StagedFile:
    """A checked local file, ready to upload: `upload_path` is the original or its UTF-8 copy."""

    name: str
    upload_path: Path
    size_bytes: int
    sha256: str
    description: str

    @property
    def file_id(self) -> str:
        """Its id among the thread's files (`ThreadFile.slack_file_id`)."""
        return f"{LOCAL_ID_PREFIX}{self.sha256[:24]}"


def _size(path: Path) -> int | None:
    """The size of the regular file at `path`; None when there is none."""
    return path.stat().st_size if path.is_file() else None


def _digest(path: Path, workdir: Path) -> tuple[int, str]:
    """Size and SHA-256 of the file (read to the end: a file that cannot be read fails here, not at upload);
    makes `workdir` for the conversion."""
    workdir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


async def stage(path: Path, workdir: Path, *, limit_bytes: int) -> StagedFile:
    """Check `path` as a Slack file is checked (type, size, emptiness, encoding, workbook) and convert text
    to UTF-8 under `workdir` (which must be the caller's, private to this file).

    Raises `FileMissing` when there is no readable file at `path`, or the `FileProblem` a Slack file with
    these bytes would meet (`FileUnsupported`, `FileTooLarge`, `FileEmpty`).
    """
    name = path.name or str(path)
    try:
        declared = await asyncio.to_thread(_size, path)
    except OSError as exc:
        raise FileMissing(name, f"{exc.__class__.__name__}: {exc}") from exc
    if declared is None:
        raise FileMissing(name, f"no file at {path}")
    file = SlackFile(id=str(path), name=name, size=declared)
    check_kind_and_size(file, limit_bytes=limit_bytes)
    try:
        size, sha256 = await asyncio.to_thread(_digest, path, workdir)
    except OSError as exc:
        raise FileMissing(name, f"{exc.__class__.__name__}: {exc}") from exc
    if size == 0:
        raise FileEmpty(name, "no bytes")
    check_kind_and_size(SlackFile(id=str(path), name=name, size=size), limit_bytes=limit_bytes)
    try:
        upload_path, description = await convert(file, path, workdir, size=size, limit_bytes=limit_bytes)
    except OSError as exc:
        raise FileMissing(name, f"{exc.__class__.__name__}: {exc}") from exc
    return StagedFile(name=name, upload_path=upload_path, size_bytes=size, sha256=sha256, description=description)
