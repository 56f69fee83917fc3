"""Slack file -> checks -> OpenAI file, with memory bounded whatever the file's size.

Two ways through, one set of checks:

- **Streamed** (plain UTF-8 text, and binary formats that need no profiling, of `STREAM_MIN_BYTES` or more):
  the download is checked as it arrives (size against Slack's declared size and the limit, the HTML sign-in
  page, binary content, strict UTF-8) and sent on to OpenAI's Uploads API in parts of `PART_BYTES` while
  later bytes are still coming, with no copy on disk. The Upload declares Slack's size up front and is
  completed only after the last byte passed every check; any failure (or a cancelled turn) cancels it, so a
  half-sent file never becomes a File. A text that turns out not to be UTF-8 cancels its Upload and takes
  the spooled way instead (its converted size cannot be declared before it is converted).
- **Spooled** (small files, text in another encoding or with a UTF-16 BOM, workbooks, unknown sizes, and
  every file once the OpenAI endpoint turned out to have no Uploads API, as some compatible gateways): the
  whole file is downloaded into a temporary file and checked, text converted to UTF-8 beside it, then
  uploaded with one `files.create`. Temporary files are removed in every case.
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
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis.workspace import FileUpload, UploadsUnavailable, Workspace
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

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
# Files from this size on are streamed to the Uploads API (create, parts, complete); smaller ones take one
# `files.create` from a spooled copy, fewer calls for the files most people share.
STREAM_MIN_BYTES = 16 * 1024 * 1024
# One part of a streamed file (the API allows 64 MB): the bytes of a part are held in memory while it is
# checked and sent, so memory is a few times this; 8 MiB parts make a 500 MB file 63 parts.
PART_BYTES = 8 * 1024 * 1024
SNIFF_BYTES = 64 * 1024
TEXT_TYPES = {"csv", "tsv", "tab", "txt", "text", "json", "jsonl", "ndjson"}
BINARY_TYPES = {"xlsx", "xls", "xlsm", "parquet"}
SUPPORTED_TYPES = TEXT_TYPES | BINARY_TYPES
# Profiled with openpyxl. Old binary `.xls` workbooks are not: openpyxl cannot read them and they are
# rare enough that the model (pandas + xlrd in the container) can look at them itself.
WORKBOOK_TYPES = {"xlsx", "xlsm"}
MAX_COLUMNS_SHOWN = 30
# What openpyxl raises for a broken workbook: zip, XML (lxml's and ElementTree's errors are SyntaxErrors),
# its own InvalidFileException (added where openpyxl is imported: only a turn with a workbook needs it),
# and lookups of parts that are missing.
_WORKBOOK_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
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
# Sent as the Upload's `mime_type` [which types OpenAI accepts for purpose user_data is unverified].
_MIME_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "tab": "text/tab-separated-values",
    "txt": "text/plain",
    "text": "text/plain",
    "json": "application/json",
    "jsonl": "application/jsonl",
    "ndjson": "application/jsonl",
    "parquet": "application/vnd.apache.parquet",
    "xls": "application/vnd.ms-excel",
}
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
    import openpyxl  # only a turn with a workbook needs it (idle memory)
    from openpyxl.utils.exceptions import InvalidFileException

    errors = (*_WORKBOOK_ERRORS, InvalidFileException)
    # A file object, not the path: openpyxl judges a path by its suffix, and ours is the spool file's.
    with path.open("rb") as fh:
        try:
            book = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except errors as exc:
            raise FileUnsupported(file.name, f"not a readable workbook: {exc.__class__.__name__}: {exc}") from exc
        try:
            sheets = [_sheet_profile(sheet) for sheet in book.worksheets]
        except errors as exc:  # a sheet whose XML breaks part-way
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


class _NotUtf8(Exception):
    """A streamed text file is not plain UTF-8 after all: it must be converted from a spooled copy."""


class _Received:
    """The checks every downloaded chunk passes, whichever way the file goes: Slack's sign-in page in place
    of the bytes, the size limit, no more bytes than Slack declared; and the file's SHA-256."""

    def __init__(self, file: SlackFile, *, limit_bytes: int) -> None:
        self.file = file
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._limit = limit_bytes

    def take(self, chunk: bytes) -> None:
        if not self.size and chunk.lstrip()[:15].lower().startswith(_HTML_PREFIXES):
            raise FileIsHtml(self.file.name, "body is an HTML page")
        self.size += len(chunk)
        if self.size > self._limit:
            raise too_large(self.file.name, self.size, limit_bytes=self._limit)
        if self.file.size is not None and self.size > self.file.size:
            # More bytes than Slack declared: cut off, never pass on a file we cannot vouch for.
            raise FileDownloadFailed(self.file.name, f"more than the declared {self.file.size} bytes")
        self.sha256.update(chunk)

    def finish(self) -> None:
        """After the last chunk: raises when the file is empty or shorter than declared."""
        if self.size == 0:
            raise FileEmpty(self.file.name, "no bytes")
        if self.file.size is not None and self.size != self.file.size:
            raise FileDownloadFailed(self.file.name, f"got {self.size} bytes, Slack declared {self.file.size}")


class _Utf8Text:
    """Strict UTF-8 checks of a text streamed past in chunks, and what `_profile` needs of it.

    Raises `_NotUtf8` at the first byte that is not UTF-8, `FileUnsupported` at a NUL byte (binary content:
    text has none, and a UTF-16 text is never streamed).
    """

    def __init__(self, file: SlackFile) -> None:
        self._file = file
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self.seen = _Decoded()

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            raise _NotUtf8(exc.reason) from exc
        if b"\x00" in chunk:
            raise FileUnsupported(self._file.name, "binary content (a NUL byte) in a text file")
        self.seen.newlines += chunk.count(b"\n")
        if text:
            self.seen.last = text[-1]
            if len(self.seen.head) < SNIFF_BYTES:
                self.seen.head += text[: SNIFF_BYTES - len(self.seen.head)]


class _Parts:
    """Gathers chunks into parts of at least `PART_BYTES` for the Upload (a part is sent while later chunks
    still download; `FileUpload.add` waits when `PARTS_IN_FLIGHT` are on their way, which holds the
    download back: a slow OpenAI slows the transfer instead of growing memory)."""

    def __init__(self, upload: FileUpload) -> None:
        self._upload = upload
        self._chunks: list[bytes] = []
        self._size = 0

    async def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size >= PART_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            await self._upload.add(data)


def streams(file: SlackFile) -> bool:
    """True for a file sent on to OpenAI while it downloads (see the module docstring)."""
    kind = file_kind(file)
    return file.size is not None and file.size >= STREAM_MIN_BYTES and kind in _MIME_TYPES


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

        `known` maps the SHA-256 of the thread's files to them: the same bytes shared again do not become a
        second OpenAI file, and the second value of the result is True for such a duplicate.
        Raises a `FileProblem` subclass; an unfinished Upload is cancelled and temporary files are removed in
        every case (also cancellation).
        """
        file = await self.resolve(file, slack=slack)
        self.check(file)
        name = upload_name or file.name
        token = slack.token or ""
        if streams(file) and self._workspace.uploads_available:
            try:
                return await self._stream(file, token=token, known=known, name=name)
            except _NotUtf8 as exc:
                log.info("file %s is not plain UTF-8 (%s): converting it from a spooled copy", file.id, exc)
            except UploadsUnavailable as exc:
                log.warning("the OpenAI endpoint has no Uploads API (%s): big files are sent whole from now on", exc)
        return await self._spool(file, token=token, known=known, name=name)

    def _thread_file(self, file: SlackFile, *, file_id: str, name: str, size: int, digest: str, description: str
                     ) -> ThreadFile:  # fmt: skip
        log.info(
            "file %s (%s, %d bytes, sha256 %s…) uploaded as %s", file.id, file_kind(file), size, digest[:12], file_id
        )
        return ThreadFile(
            slack_file_id=file.id,
            openai_file_id=file_id,
            filename=name,
            size_bytes=size,
            description=description,
            sha256=digest,
        )

    @contextlib.asynccontextmanager
    async def _get(self, file: SlackFile, *, token: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """The download's response once its status and headers passed the checks; aiohttp's errors and
        timeouts (also while the body is read inside the block) become `FileDownloadFailed`."""
        assert file.url is not None
        headers = {"Authorization": f"Bearer {token}"}
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
                    raise too_large(file.name, declared, limit_bytes=self._limit)
                yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileDownloadFailed(file.name, f"{exc.__class__.__name__}: {exc}") from exc

    async def _stream(
        self, file: SlackFile, *, token: str, known: Mapping[str, ThreadFile], name: str
    ) -> tuple[ThreadFile, bool]:
        """Download `file` and send it on to the Uploads API at the same time (see the module docstring).

        Raises `_NotUtf8` (the Upload cancelled) for a text that must be converted, or a `FileProblem`.
        """
        assert file.size is not None
        kind = file_kind(file)
        received = _Received(file, limit_bytes=self._limit)
        text = _Utf8Text(file) if kind in TEXT_TYPES else None
        async with self._get(file, token=token) as resp:
            chunks = resp.content.iter_any()  # as received: no re-chunking copies
            head = b""
            async for chunk in chunks:  # the head decides before anything is sent
                received.take(chunk)
                head += chunk
                if len(head) >= SNIFF_BYTES:
                    break
            skip = 0
            if text is not None:
                _sniff_binary(head, file.name)
                bom = _bom_encoding(head)
                if bom == "utf-16":
                    raise _NotUtf8("UTF-16 byte order mark")
                skip = len(codecs.BOM_UTF8) if bom == "utf-8-sig" else 0  # the copy OpenAI gets has no BOM
                text.feed(head[skip:])  # a head that is not UTF-8 never starts an Upload
            async with self._workspace.file_upload(
                filename=name, size_bytes=file.size - skip, mime_type=_MIME_TYPES[kind]
            ) as upload:
                parts = _Parts(upload)
                await parts.add(head[skip:])
                async for chunk in chunks:
                    received.take(chunk)
                    if text is not None:
                        text.feed(chunk)
                    await parts.add(chunk)
                received.finish()
                if text is not None:
                    text.feed(b"", final=True)
                digest = received.sha256.hexdigest()
                if (same := known.get(digest)) is not None:  # leaving the block unfinished cancels the Upload
                    log.info("file %s has the same bytes as %s; its upload is cancelled", file.id, same.slack_file_id)
                    return replace(same, slack_file_id=file.id), True
                await parts.flush()
                file_id = await upload.complete()
        description = f"{file.size} bytes"
        if text is not None:
            description += f"; {_profile(text.seen, encoding='utf-8', kind=kind).describe()}"
        thread_file = self._thread_file(
            file, file_id=file_id, name=name, size=file.size, digest=digest, description=description
        )
        return thread_file, False

    async def _spool(
        self, file: SlackFile, *, token: str, known: Mapping[str, ThreadFile], name: str
    ) -> tuple[ThreadFile, bool]:
        """Download `file` into a temporary file, check and convert it there, then upload it whole."""
        with tempfile.TemporaryDirectory(prefix="bot-intake-") as tmp:
            raw = Path(tmp) / "raw"
            size, digest = await self._download(file, raw, token=token)
            if (same := known.get(digest)) is not None:
                log.info("file %s has the same bytes as %s; not uploaded again", file.id, same.slack_file_id)
                return replace(same, slack_file_id=file.id), True
            upload_path, description = await convert(file, raw, Path(tmp), size=size, limit_bytes=self._limit)
            file_id = await self._workspace.upload_file(upload_path, filename=name)
        thread_file = self._thread_file(
            file, file_id=file_id, name=name, size=size, digest=digest, description=description
        )
        return thread_file, False

    async def _download(self, file: SlackFile, dest: Path, *, token: str) -> tuple[int, str]:
        received = _Received(file, limit_bytes=self._limit)
        async with self._get(file, token=token) as resp:
            with dest.open("wb") as out:
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    received.take(chunk)
                    out.write(chunk)
        received.finish()
        return received.size, received.sha256.hexdigest()


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


def _decode_pass(src: Path, encoding: str, dest: Path | None, *, name: str) -> _Decoded:
    """Decode `src` strictly with `encoding` in chunks (writing UTF-8 to `dest` when given).

    Raises `_NotDecodable` with the byte offset of the first undecodable byte, `FileUnsupported` (named
    `name`) for a NUL character: binary content, as a streamed text would be refused for it.
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
            if "\x00" in text:
                raise FileUnsupported(name, "binary content (a NUL character) in a text file")
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
    from charset_normalizer import from_bytes  # only a file that is not UTF-8 needs it (idle memory)

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
            decoded = _decode_pass(src, encoding, dest, name=file.name)
        except _NotDecodable as exc:
            raise FileUnsupported(file.name, f"not decodable as {encoding}: {exc.reason}") from exc
    else:
        try:
            decoded, encoding = _decode_pass(src, "utf-8", None, name=file.name), "utf-8"
        except _NotDecodable as first:
            decoded, encoding = _decode_as_detected(src, dest, file, first.offset)
    return _profile(decoded, encoding=encoding, kind=file_kind(file))


def _decode_as_detected(src: Path, dest: Path, file: SlackFile, offset: int) -> tuple[_Decoded, str]:
    candidates = _candidate_encodings(_sample_around(src, offset))
    failures: list[str] = []
    for encoding in candidates:
        try:
            return _decode_pass(src, encoding, dest, name=file.name), encoding
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
