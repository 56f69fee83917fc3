"""Slack file -> checks -> UTF-8 copy on disk -> OpenAI file, with memory bounded by the chunk size.

Why spool to disk rather than pipe Slack's stream into OpenAI's upload: the Files API needs the
length up front and we must not hand OpenAI half a file if Slack's stream breaks or the file turns
out larger than declared, so the whole file is checked (size, HTML, encoding) before any upload.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import hashlib
import logging
import tempfile
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import aiohttp
from charset_normalizer import from_bytes
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis.workspace import Workspace
from bot.domain import SlackFile, ThreadFile
from bot.errors import (
    FileDownloadFailed,
    FileEmpty,
    FileExternal,
    FileIsHtml,
    FileTooLarge,
    FileUnavailable,
    FileUnsupported,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
SNIFF_BYTES = 64 * 1024
TEXT_TYPES = {"csv", "tsv", "tab", "txt", "text", "json", "jsonl", "ndjson"}
BINARY_TYPES = {"xlsx", "xls", "xlsm", "parquet"}
SUPPORTED_TYPES = TEXT_TYPES | BINARY_TYPES
_HTML_PREFIXES = (b"<!doctype html", b"<html")
_BINARY_SIGNATURES = (b"\x89PNG", b"%PDF", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04", b"\x1f\x8b")
_EXTERNAL_NAMES = {"gdrive": "Google Drive", "dropbox": "Dropbox", "box": "Box", "onedrive": "OneDrive"}


@dataclass(frozen=True)
class Profile:
    """What the model is told about a text file so its first answer needs no guessing."""

    encoding: str
    delimiter: str | None
    rows: int | None
    columns: tuple[str, ...]
    converted: bool = True  # False: the original bytes are already plain UTF-8 and were not copied

    def describe(self) -> str:
        parts = [f"original encoding {self.encoding}, converted to UTF-8" if self.encoding != "utf-8" else "UTF-8"]
        if self.delimiter is not None:
            parts.append(f"delimiter {self.delimiter!r}")
        if self.rows is not None:
            parts.append(f"{self.rows} data rows")
        if self.columns:
            shown = ", ".join(self.columns[:30]) + (" …" if len(self.columns) > 30 else "")
            parts.append(f"{len(self.columns)} columns: {shown}")
        return "; ".join(parts)


def file_kind(file: SlackFile) -> str:
    """The lower-case format of a Slack file, from its name first, then Slack's filetype."""
    suffix = PurePosixPath(file.name).suffix.lower().lstrip(".")
    if suffix:
        return suffix
    return file.filetype.lower()


class Intake:
    """Brings Slack files into OpenAI, downloading through the caller's HTTP session."""

    def __init__(
        self,
        *,
        slack: AsyncWebClient,
        workspace: Workspace,
        bot_token: str,
        size_limit_bytes: int,
        http: aiohttp.ClientSession,
    ) -> None:
        self._slack = slack
        self._workspace = workspace
        self._bot_token = bot_token
        self._limit = size_limit_bytes
        self._http = http

    async def resolve(self, file: SlackFile) -> SlackFile:
        """Fill in a stub file entry (`file_access: check_file_info`) with `files.info`."""
        if not file.is_stub and file.url:
            return file
        try:
            response = await self._slack.files_info(file=file.id)
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error in {"file_not_found", "file_deleted"}:
                raise FileUnavailable(file.name, f"files.info: {error}") from exc
            raise FileDownloadFailed(file.name, f"files.info: {error}") from exc
        return SlackFile.from_slack(response["file"])

    def check(self, file: SlackFile) -> None:
        """Refuse a file before any byte is fetched (raises a `FileProblem`)."""
        if file.is_external or file.mode == "external":
            service = _EXTERNAL_NAMES.get(file.external_type.lower(), file.external_type or "external")
            raise FileExternal(file.name, "external file", service=service)
        if file.mode in {"tombstone", "hidden_by_limit"}:
            raise FileUnavailable(file.name, f"mode {file.mode}")
        if file_kind(file) not in SUPPORTED_TYPES:
            raise FileUnsupported(file.name, f"type {file_kind(file)!r}")
        if file.size is not None and file.size > self._limit:
            raise self._too_large(file.name, file.size)
        if file.size == 0:
            raise FileEmpty(file.name, "declared size 0")
        if not file.url:
            raise FileDownloadFailed(file.name, "no download URL")

    def _too_large(self, name: str, size: int) -> FileTooLarge:
        return FileTooLarge(
            name,
            f"{size} bytes",
            size_mb=f"{size / 1_048_576:.0f}",
            limit_mb=f"{self._limit / 1_048_576:.0f}",
        )

    async def bring(self, file: SlackFile, *, known: Mapping[str, ThreadFile]) -> tuple[ThreadFile, bool]:
        """Fetch `file` from Slack, check it, convert text to UTF-8 and upload it to OpenAI.

        `known` maps the SHA-256 of the thread's files to them: the same bytes shared again are not
        uploaded twice, and the second value of the result is True for such a duplicate.
        Raises a `FileProblem` subclass; temporary files are removed in every case (also cancellation).
        """
        file = await self.resolve(file)
        self.check(file)
        with tempfile.TemporaryDirectory(prefix="bot-intake-") as tmp:
            raw = Path(tmp) / "raw"
            size, digest = await self._download(file, raw)
            if (same := known.get(digest)) is not None:
                log.info("file %s has the same bytes as %s; not uploaded again", file.id, same.slack_file_id)
                return replace(same, slack_file_id=file.id), True
            upload_path, description = raw, f"{size} bytes"
            if file_kind(file) in TEXT_TYPES:
                converted = Path(tmp) / "utf8"
                profile = await asyncio.to_thread(_to_utf8, raw, converted, file)
                if profile.converted:
                    upload_path = converted
                    if (converted_size := converted.stat().st_size) > self._limit:
                        # CP949 text grows by about a fifth in UTF-8.
                        raise self._too_large(file.name, converted_size)
                description = f"{size} bytes; {profile.describe()}"
            file_id = await self._workspace.upload_file(upload_path, filename=file.name)
        log.info(
            "file %s (%s, %d bytes, sha256 %s…) uploaded as %s", file.id, file_kind(file), size, digest[:12], file_id
        )
        thread_file = ThreadFile(
            slack_file_id=file.id,
            openai_file_id=file_id,
            filename=file.name,
            size_bytes=size,
            description=description,
            sha256=digest,
        )
        return thread_file, False

    async def _download(self, file: SlackFile, dest: Path) -> tuple[int, str]:
        assert file.url is not None
        headers = {"Authorization": f"Bearer {self._bot_token}"}
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._http.get(file.url, headers=headers, allow_redirects=True) as resp:
                if resp.status in (404, 410):
                    raise FileUnavailable(file.name, f"HTTP {resp.status}")
                if resp.status != 200:
                    raise FileDownloadFailed(file.name, f"HTTP {resp.status}")
                if resp.content_type == "text/html":
                    raise FileIsHtml(file.name, "content-type text/html")
                declared = resp.content_length
                if declared is not None and declared > self._limit:
                    raise self._too_large(file.name, declared)
                with dest.open("wb") as out:
                    first = True
                    async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                        if first:
                            first = False
                            if chunk.lstrip()[:15].lower().startswith(_HTML_PREFIXES):
                                raise FileIsHtml(file.name, "body is an HTML page")
                        size += len(chunk)
                        if size > self._limit:
                            raise self._too_large(file.name, size)
                        if file.size is not None and size > file.size:
                            # More bytes than Slack declared: cut off, never pass on a file we cannot vouch for.
                            raise FileDownloadFailed(file.name, f"more than the declared {file.size} bytes")
                        digest.update(chunk)
                        out.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileDownloadFailed(file.name, f"{exc.__class__.__name__}: {exc}") from exc
        if size == 0:
            raise FileEmpty(file.name, "no bytes")
        if file.size is not None and size != file.size:
            raise FileDownloadFailed(file.name, f"got {size} bytes, Slack declared {file.size}")
        return size, digest.hexdigest()


def _detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is still UTF-8.
        if exc.start >= len(head) - 4:
            return "utf-8"
    best = from_bytes(head, cp_isolation=["cp949", "euc_kr", "utf_16", "cp1252", "shift_jis", "gb18030"]).best()
    if best is None:
        return "cp949"
    return str(best.encoding)


def _to_utf8(src: Path, dest: Path, file: SlackFile) -> Profile:
    """Copy `src` to `dest` as UTF-8 (no BOM), streaming; returns the file's profile.

    A file that already is plain UTF-8 is only validated and profiled (`converted=False`, no copy).
    Raises `FileUnsupported` when the bytes are not text (e.g. a PNG named `.csv`).
    """
    with src.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith(_BINARY_SIGNATURES) or (b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))):
        raise FileUnsupported(file.name, "binary content in a text file")
    encoding = _detect_encoding(head)
    copy = encoding != "utf-8"
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    newlines = 0
    last = ""
    text_head = ""
    try:
        with src.open("rb") as fin, dest.open("w", encoding="utf-8", newline="") if copy else nullcontext() as fout:
            while chunk := fin.read(CHUNK_BYTES):
                text = decoder.decode(chunk)
                if len(text_head) < SNIFF_BYTES:
                    text_head += text[: SNIFF_BYTES - len(text_head)]
                newlines += text.count("\n")
                if text:
                    last = text[-1]
                if fout is not None:
                    fout.write(text)
            tail = decoder.decode(b"", final=True)
            if fout is not None:
                fout.write(tail)
            if tail:
                last = tail[-1]
    except UnicodeDecodeError as exc:
        raise FileUnsupported(file.name, f"not decodable as {encoding}: {exc.reason}") from exc
    if text_head.startswith("\ufeff"):
        text_head = text_head[1:]
    name = "utf-8" if encoding in {"utf-8", "utf-8-sig", "ascii"} else encoding
    kind = file_kind(file)
    if kind in {"json", "jsonl", "ndjson"}:
        return Profile(encoding=name, delimiter=None, rows=None, columns=(), converted=copy)
    lines = newlines + (1 if last and last != "\n" else 0)
    delimiter = _sniff_delimiter(text_head, kind)
    columns: tuple[str, ...] = ()
    first_line = text_head.splitlines()[0] if text_head else ""
    if first_line:
        with contextlib.suppress(csv.Error):
            columns = tuple(c.strip() for c in next(csv.reader([first_line], delimiter=delimiter)))
    return Profile(encoding=name, delimiter=delimiter, rows=max(lines - 1, 0), columns=columns, converted=copy)


def _sniff_delimiter(text: str, kind: str) -> str:
    if kind in {"tsv", "tab"}:
        return "\t"
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","
