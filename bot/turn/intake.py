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
import zipfile
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import openpyxl
from charset_normalizer import from_bytes
from openpyxl.utils.exceptions import InvalidFileException
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
# Profiled with openpyxl. Old binary `.xls` workbooks are not: openpyxl cannot read them and they are
# rare enough that the model (pandas + xlrd in the container) can look at them itself.
WORKBOOK_TYPES = {"xlsx", "xlsm"}
MAX_COLUMNS_SHOWN = 30
# What openpyxl raises for a broken workbook: zip, XML (lxml's and ElementTree's errors are SyntaxErrors),
# its own InvalidFileException, and lookups of parts that are missing.
_WORKBOOK_ERRORS = (
    zipfile.BadZipFile,
    InvalidFileException,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    SyntaxError,
    EOFError,
    OSError,
)
_HTML_PREFIXES = (b"<!doctype html", b"<html")
_BINARY_SIGNATURES = (b"\x89PNG", b"%PDF", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04", b"\x1f\x8b")
# Encodings a text file that is not UTF-8 may be in: detection ranks these on a sample.
DETECTED_ENCODINGS = ("cp949", "euc_kr", "shift_jis", "gb18030", "cp1252")
# Tried in this order after the ranked ones; cp1252 last, as it decodes nearly any bytes.
FALLBACK_ENCODINGS = ("cp949", "shift_jis", "gb18030", "cp1252")
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
            parts.append(_columns_text(self.columns))
        return "; ".join(parts)


def _columns_text(columns: tuple[str, ...]) -> str:
    shown = ", ".join(columns[:MAX_COLUMNS_SHOWN]) + (" …" if len(columns) > MAX_COLUMNS_SHOWN else "")
    return f"{len(columns)} columns: {shown}"


def _sheet_profile(sheet: Any) -> str:
    first = next(sheet.iter_rows(min_row=1, max_row=1, values_only=True), ())
    while first and first[-1] is None:
        first = first[:-1]
    columns = tuple("" if v is None else str(v).strip() for v in first)
    rows = sheet.max_row
    if not rows or (rows == 1 and sheet.max_column == 1):
        # No recorded size (or a writer that records "A1" for every sheet): count the rows.
        rows = sum(1 for _ in sheet.iter_rows(values_only=True))
    parts = [f"{max(rows - 1, 0) if columns else rows} data rows"]
    if columns:
        parts.append(_columns_text(columns))
    return f"{sheet.title!r} ({'; '.join(parts)})"


def _workbook_profile(path: Path, file: SlackFile) -> str:
    """Each sheet of an XLSX workbook with its data rows and header names, e.g.
    `1 sheet: 'Sales' (120 data rows; 3 columns: month, region, amount)`.

    Read with openpyxl in read-only mode (rows are streamed, memory stays flat). A sheet without a
    recorded size is counted row by row. Raises `FileUnsupported` for a file openpyxl cannot open.
    """
    # A file object, not the path: openpyxl judges a path by its suffix, and ours is the spool file's.
    with path.open("rb") as fh:
        try:
            book = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except _WORKBOOK_ERRORS as exc:
            raise FileUnsupported(file.name, f"not a readable workbook: {exc.__class__.__name__}: {exc}") from exc
        try:
            sheets = [_sheet_profile(sheet) for sheet in book.worksheets]
        except _WORKBOOK_ERRORS as exc:  # a sheet whose XML breaks part-way
            raise FileUnsupported(file.name, f"not a readable workbook: {exc.__class__.__name__}: {exc}") from exc
        finally:
            book.close()
    return f"{len(sheets)} sheet{'s' if len(sheets) != 1 else ''}: " + ", ".join(sheets)


def file_kind(file: SlackFile) -> str:
    """The lower-case format of a Slack file, from its name first, then Slack's filetype."""
    suffix = PurePosixPath(file.name).suffix.lower().lstrip(".")
    if suffix:
        return suffix
    return file.filetype.lower()


def too_large(name: str, size: int, *, limit_bytes: int) -> FileTooLarge:
    """The refusal of a file of `size` bytes over the `limit_bytes` limit."""
    return FileTooLarge(
        name, f"{size} bytes", size_mb=f"{size / 1_048_576:.0f}", limit_mb=f"{limit_bytes / 1_048_576:.0f}"
    )


def check_kind_and_size(file: SlackFile, *, limit_bytes: int) -> None:
    """Refuse a file of an unsupported type, over `limit_bytes` or empty (by its declared size)."""
    if file_kind(file) not in SUPPORTED_TYPES:
        raise FileUnsupported(file.name, f"type {file_kind(file)!r}")
    if file.size is not None and file.size > limit_bytes:
        raise too_large(file.name, file.size, limit_bytes=limit_bytes)
    if file.size == 0:
        raise FileEmpty(file.name, "declared size 0")


async def convert(file: SlackFile, raw: Path, workdir: Path, *, size: int, limit_bytes: int) -> tuple[Path, str]:
    """Check and convert the whole file at `raw` (`size` bytes): text to UTF-8 (into `workdir`), and profile it.

    Returns the path to upload and the file's description for the model. This is where a file enters
    whatever its source: Slack's download (`Intake.bring`) or a local path (`bot.turn.local_files`).
    Raises `FileUnsupported` (binary bytes in a text file, undecodable text, a broken workbook) or
    `FileTooLarge` (text that grows past the limit in UTF-8).
    """
    upload_path, description = raw, f"{size} bytes"
    if file_kind(file) in TEXT_TYPES:
        converted = workdir / "utf8"
        profile = await asyncio.to_thread(_to_utf8, raw, converted, file)
        if profile.converted:
            upload_path = converted
            if (converted_size := converted.stat().st_size) > limit_bytes:
                # CP949 text grows by about a fifth in UTF-8.
                raise too_large(file.name, converted_size, limit_bytes=limit_bytes)
        description = f"{size} bytes; {profile.describe()}"
    elif file_kind(file) in WORKBOOK_TYPES:
        description = f"{size} bytes; {await asyncio.to_thread(_workbook_profile, raw, file)}"
    return upload_path, description


class Intake:
    """Brings Slack files into OpenAI, downloading through the caller's HTTP session.

    Each call takes the Web API client of the file's workspace (`slack`); downloads send its bot token.
    """

    def __init__(
        self,
        *,
        workspace: Workspace,
        size_limit_bytes: int,
        http: aiohttp.ClientSession,
    ) -> None:
        self._workspace = workspace
        self._limit = size_limit_bytes
        self._http = http

    async def resolve(self, file: SlackFile, *, slack: AsyncWebClient) -> SlackFile:
        """Fill in a stub file entry (`file_access: check_file_info`) with `files.info`."""
        if not file.is_stub and file.url:
            return file
        try:
            response = await slack.files_info(file=file.id)
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
        check_kind_and_size(file, limit_bytes=self._limit)
        if not file.url:
            raise FileDownloadFailed(file.name, "no download URL")

    def _too_large(self, name: str, size: int) -> FileTooLarge:
        return too_large(name, size, limit_bytes=self._limit)

    async def bring(
        self,
        file: SlackFile,
        *,
        slack: AsyncWebClient,
        known: Mapping[str, ThreadFile],
        upload_name: str | None = None,
    ) -> tuple[ThreadFile, bool]:
        """Fetch `file` from Slack, check it, convert text to UTF-8 and upload it to OpenAI under
        `upload_name` (default: the Slack name), which becomes its name in the container.

        `known` maps the SHA-256 of the thread's files to them: the same bytes shared again are not
        uploaded twice, and the second value of the result is True for such a duplicate.
        Raises a `FileProblem` subclass; temporary files are removed in every case (also cancellation).
        """
        file = await self.resolve(file, slack=slack)
        self.check(file)
        with tempfile.TemporaryDirectory(prefix="bot-intake-") as tmp:
            raw = Path(tmp) / "raw"
            size, digest = await self._download(file, raw, token=slack.token or "")
            if (same := known.get(digest)) is not None:
                log.info("file %s has the same bytes as %s; not uploaded again", file.id, same.slack_file_id)
                return replace(same, slack_file_id=file.id), True
            upload_path, description = await convert(file, raw, Path(tmp), size=size, limit_bytes=self._limit)
            file_id = await self._workspace.upload_file(upload_path, filename=upload_name or file.name)
        log.info(
            "file %s (%s, %d bytes, sha256 %s…) uploaded as %s", file.id, file_kind(file), size, digest[:12], file_id
        )
        thread_file = ThreadFile(
            slack_file_id=file.id,
            openai_file_id=file_id,
            filename=upload_name or file.name,
            size_bytes=size,
            description=description,
            sha256=digest,
        )
        return thread_file, False

    async def _download(self, file: SlackFile, dest: Path, *, token: str) -> tuple[int, str]:
        assert file.url is not None
        headers = {"Authorization": f"Bearer {token}"}
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


def _sniff_binary(head: bytes, name: str) -> None:
    if head.startswith(_BINARY_SIGNATURES) or (b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))):
        raise FileUnsupported(name, "binary content in a text file")


@dataclass
class _Decoded:
    """What one decoding pass over a whole file saw."""

    newlines: int = 0
    last: str = ""
    head: str = ""


class _NotDecodable(Exception):
    """A decoding pass failed at byte `offset` of the file."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _decode_pass(src: Path, encoding: str, dest: Path | None) -> _Decoded:
    """Decode `src` strictly with `encoding` in chunks (writing UTF-8 to `dest` when given).

    Raises `_NotDecodable` with the byte offset of the first undecodable byte.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    seen = _Decoded()
    consumed = 0
    with src.open("rb") as fin, dest.open("w", encoding="utf-8", newline="") if dest else nullcontext() as fout:
        while True:
            chunk = fin.read(CHUNK_BYTES)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise _NotDecodable(max(consumed - pending + exc.start, 0), exc.reason) from exc
            consumed += len(chunk)
            if len(seen.head) < SNIFF_BYTES:
                seen.head += text[: SNIFF_BYTES - len(seen.head)]
            seen.newlines += text.count("\n")
            if text:
                seen.last = text[-1]
            if fout is not None:
                fout.write(text)
            if not chunk:
                return seen


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _sample_around(src: Path, offset: int) -> bytes:
    """The lines from byte `offset` on (where UTF-8 failed), for detection.

    The sample is where the non-UTF-8 text is: a head of ASCII rows would tell nothing, and would let a
    single-byte code page win the ranking. It starts after a newline: 0x0A is never part of a multi-byte
    character in the candidate encodings, so the sample does not begin in the middle of one.
    """
    start = max(offset - 1024, 0)
    with src.open("rb") as fh:
        fh.seek(start)
        window = fh.read(SNIFF_BYTES)
    begin = window.rfind(b"\n", 0, offset - start) + 1
    end = window.rfind(b"\n") + 1
    return window[begin:end] if end > offset - start else window[begin:]


def _candidate_encodings(sample: bytes) -> list[str]:
    """Encodings to try, most likely first: charset-normalizer's ranking of `sample`, then the fallbacks."""
    ranked = [str(m.encoding) for m in from_bytes(sample, cp_isolation=list(DETECTED_ENCODINGS))]
    # CP949 is a superset of EUC-KR: a later CP949-only character must not fail an "euc_kr" decode.
    ordered = ["cp949" if e == "euc_kr" else e for e in [*ranked, *FALLBACK_ENCODINGS]]
    return [e for e in dict.fromkeys(ordered) if e in FALLBACK_ENCODINGS or e in DETECTED_ENCODINGS]


def _to_utf8(src: Path, dest: Path, file: SlackFile) -> Profile:
    """Copy `src` to `dest` as UTF-8 (no BOM), streaming; returns the file's profile.

    The encoding is decided from the whole file: a strict UTF-8 pass first (the common case, which
    also profiles the file and needs no copy, `converted=False`); when it fails, the candidates are
    ranked on a sample around the first non-UTF-8 byte and each is tried over the whole file until one
    decodes it. Memory stays bounded by the chunk and sample sizes whatever the file's size.
    Raises `FileUnsupported` when the bytes are not text (e.g. a PNG named `.csv`) or no candidate
    decodes them.
    """
    with src.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    _sniff_binary(head, file.name)
    encoding = _bom_encoding(head)
    if encoding is not None:
        try:
            decoded = _decode_pass(src, encoding, dest)
        except _NotDecodable as exc:
            raise FileUnsupported(file.name, f"not decodable as {encoding}: {exc.reason}") from exc
    else:
        try:
            decoded, encoding = _decode_pass(src, "utf-8", None), "utf-8"
        except _NotDecodable as first:
            decoded, encoding = _decode_as_detected(src, dest, file, first.offset)
    return _profile(decoded, encoding=encoding, kind=file_kind(file))


def _decode_as_detected(src: Path, dest: Path, file: SlackFile, offset: int) -> tuple[_Decoded, str]:
    candidates = _candidate_encodings(_sample_around(src, offset))
    failures: list[str] = []
    for encoding in candidates:
        try:
            return _decode_pass(src, encoding, dest), encoding
        except _NotDecodable as exc:
            failures.append(f"{encoding} at byte {exc.offset}")
    raise FileUnsupported(file.name, "not decodable as " + ", ".join(failures))


def _profile(decoded: _Decoded, *, encoding: str, kind: str) -> Profile:
    text_head = decoded.head.removeprefix("\ufeff")
    name = "utf-8" if encoding in {"utf-8", "utf-8-sig", "ascii"} else encoding
    copy = encoding != "utf-8"
    if kind in {"json", "jsonl", "ndjson"}:
        return Profile(encoding=name, delimiter=None, rows=None, columns=(), converted=copy)
    lines = decoded.newlines + (1 if decoded.last and decoded.last != "\n" else 0)
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
