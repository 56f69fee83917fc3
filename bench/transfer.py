"""How fast a huge Slack file reaches OpenAI through the bot, and how much memory the bot needs to move it.

Run: `python -m bench.transfer [--mb 500] [--runs 3] [--cp949] [--skip-inprocess]`.

A CSV of `--mb` MiB (header `id,이름,점수,메모`, varied Korean + ASCII rows) is written in chunks to a temp dir
(with `--cp949` also a CP949 copy of the same rows, to time the conversion path). Everything runs on 127.0.0.1
against the loopback `FakeSlack` and `FakeOpenAI` of `tests.fakes`. Each of `--runs` rounds measures, one
after another so that all see the same moment of a shared machine:

1. floor: the same bytes fetched from FakeSlack's file host and piped, chunk by chunk, into one streamed
   `POST /v1/files` to the same FakeOpenAI the bot uploads to (aiohttp both ways, one process): a plain copy
   with the same bytes, the same fakes and the same work on the receiving side (FakeOpenAI hashes what it
   receives, for the floor's file as for the bot's parts). The bot's figure is reported as a ratio to it;
2. a second reference: the same copy into a bare sink that only counts bytes (the floor of earlier runs);
3. (first round only, unless `--skip-inprocess`) the bot in this process (`tests.conftest.run_bot`, Socket
   Mode): a user posts `<@UBOT> 분석해줘` with the file; timed from the post until FakeOpenAI has the whole
   file (a completed Upload, or the end of a `files.create`);
4. the bot as its own process (`python -m bot`, env from `tests.conftest.bot_env`), the same post, with the bot
   process's VmRSS sampled from /proc every 50 ms (its VmHWM is reset just before the post, so it is the peak
   while moving the file) and its CPU seconds read from /proc. Goal: growth < 64 MiB for a 500 MiB file.

The fakes run in this process. FakeOpenAI is subclassed so that it streams uploads and parts through SHA-256
instead of keeping them (500 MiB in the bench process would blur nothing about the bot, but costs RAM); the
digests (of the whole file, or of each part against its slice of the source) prove the bot uploaded exactly
the UTF-8 text. Temp dirs the bot leaves behind (`bot-intake-*` in `tempfile.gettempdir()`, new during this
run) are counted. MB means MiB (1,048,576 bytes) throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import hashlib
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from tests.conftest import answer_texts, bot_env, run_bot
from tests.fakes.openai_fake import _RECORD, FakeOpenAI, _bad, _missing
from tests.fakes.slack import FakeSlack

MIB = 1024 * 1024
CHUNK_BYTES = 256 * 1024
ROWS_PER_WRITE = 20_000
SAMPLE_EVERY_S = 0.05
RSS_GOAL_MIB = 64
BOT_START_S = 30.0
BOT_STOP_S = 15.0
SETTLE_S = 1.0
TEMP_PREFIX = "bot-intake-"
HEADER = "id,이름,점수,메모\n"
ROOT = Path(__file__).resolve().parents[1]

_SURNAMES = ("김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황", "안", "송")
_GIVEN = ("민준", "서연", "도윤", "지우", "하준", "서윤", "예준", "지호", "수아", "시우", "하은")
_MEMOS = [
    "재구매 의사 있음",
    "배송 지연 문의",
    "VIP customer, 서울 강남점",
    "환불 요청 - refund pending",
    "쿠폰 사용 (10% off)",
    "첫 구매",
    "상담 완료; follow-up next week",
    "부산 지점 방문",
    "no comment",
    "포장 불량, 교환 처리",
    "앱 리뷰 작성: 별 다섯 개",
    "email bounced",
]


# ------------------------------------------------------------------ the file
def _row_tails(rng: random.Random, count: int) -> list[str]:
    """`count` varied `이름,점수,메모` strings; memos with a comma are quoted as a spreadsheet would."""
    tails = []
    for _ in range(count):
        memo = rng.choice(_MEMOS)
        if rng.random() < 0.3:
            memo += f" #{rng.randrange(1000, 9999)}"
        if "," in memo:
            memo = f'"{memo}"'
        tails.append(f"{rng.choice(_SURNAMES)}{rng.choice(_GIVEN)},{rng.randrange(0, 101)},{memo}")
    return tails


def write_csv(path: Path, size_bytes: int) -> tuple[int, str]:
    """Write a UTF-8 CSV of at most `size_bytes` (whole rows only), in chunks; return its size and SHA-256."""
    tails = _row_tails(random.Random(20240601), 4096)
    digest = hashlib.sha256()
    written = 0
    row_id = 1
    with path.open("wb") as out:
        pending = HEADER.encode()
        while True:
            if written + len(pending) > size_bytes:
                # Last partial batch: keep only whole rows that still fit.
                cut = pending.rfind(b"\n", 0, size_bytes - written)
                pending = pending[: cut + 1] if cut >= 0 else b""
            if not pending:
                break
            out.write(pending)
            digest.update(pending)
            written += len(pending)
            rows = range(row_id, row_id + ROWS_PER_WRITE)
            pending = "".join(f"{i},{tails[i % len(tails)]}\n" for i in rows).encode()
            row_id += ROWS_PER_WRITE
    return written, digest.hexdigest()


def write_cp949(src: Path, dest: Path) -> int:
    """Transcode the UTF-8 file `src` to CP949 (as Excel on Korean Windows saves it), streaming; returns its size."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with src.open("rb") as fin, dest.open("wb") as fout:
        while chunk := fin.read(CHUNK_BYTES):
            fout.write(decoder.decode(chunk).encode("cp949"))
        fout.write(decoder.decode(b"", final=True).encode("cp949"))
    return dest.stat().st_size


# ------------------------------------------------------------------ fakes that time the transfer
class _Received:
    """Stands in for the upload's bytes in FakeOpenAI's records: only its length is kept."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


@dataclass
class _Upload:
    filename: str
    size: int
    sha256: str
    started: float
    finished: float


@dataclass
class _Part:
    """Stands in for one part's bytes in FakeOpenAI's Upload records: its length and SHA-256 only."""

    size: int
    sha256: str
    started: float

    def __len__(self) -> int:
        return self.size


class _StreamingOpenAI(FakeOpenAI):
    """FakeOpenAI whose Files endpoint and Uploads parts hash what streams in rather than keeping it.

    `received` lists each whole file as it arrived: a `files.create`, or a completed Upload (its SHA-256 is
    then "parts": `part_digests` holds (size, SHA-256) of its parts in `part_ids` order).
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: list[_Upload] = []
        self.part_digests: list[list[tuple[int, str]]] = []

    async def __aenter__(self) -> _StreamingOpenAI:
        await self.start()
        return self

    async def _read_multipart(self, request: web.Request) -> tuple[dict[str, str], tuple[str, Any] | None]:
        if not request.content_type.startswith("multipart/"):
            raise _missing("file")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        upload: _Upload | None = None
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            if part.name == "file" or part.filename is not None:
                digest, size, started = hashlib.sha256(), 0, time.perf_counter()
                while chunk := await part.read_chunk(CHUNK_BYTES):
                    size += len(chunk)
                    digest.update(chunk)
                upload = _Upload(part.filename or "upload", size, digest.hexdigest(), started, time.perf_counter())
                self.received.append(upload)
            else:
                fields[part.name or ""] = await part.text()
        form: dict[str, Any] = dict(fields)
        if upload is not None:
            form["file"] = {"filename": upload.filename, "bytes": upload.size}
        request[_RECORD].form = form
        if upload is not None and upload.size > self.max_file_bytes:
            limit_mb = self.max_file_bytes // MIB
            message = f"File is too large ({upload.size} bytes). The maximum file size is {limit_mb} MB."
            raise _bad(message, param="file")
        return fields, None if upload is None else (upload.filename, _Received(upload.size))

    async def _read_part(self, request: web.Request) -> bytes:
        if not request.content_type.startswith("multipart/"):
            raise _missing("data")
        reader = await request.multipart()
        part: _Part | None = None
        while (field := await reader.next()) is not None:
            assert isinstance(field, BodyPartReader)
            if field.name != "data":
                await field.release()
                continue
            digest, size, started = hashlib.sha256(), 0, time.perf_counter()
            while chunk := await field.read_chunk(CHUNK_BYTES):
                size += len(chunk)
                digest.update(chunk)
            part = _Part(size, digest.hexdigest(), started)
        if part is None:
            raise _missing("data")
        request[_RECORD].form = {"data": {"bytes": part.size}}
        if part.size > self.max_part_bytes:
            raise _bad(f"Part is too large ({part.size} bytes).", param="data")
        return part  # type: ignore[return-value]

    def _joined(self, record: dict[str, Any], part_ids: list[str]) -> bytes:
        parts: list[_Part] = [record["parts"][p] for p in part_ids]
        size = sum(p.size for p in parts)
        self.part_digests.append([(p.size, p.sha256) for p in parts])
        started = min(p.started for p in parts)
        self.received.append(_Upload(record["object"]["filename"], size, "parts", started, time.perf_counter()))
        return _Received(size)  # type: ignore[return-value]


class _TimedSlack(FakeSlack):
    """FakeSlack that notes when each file download starts and when its last byte has been written."""

    def __init__(self) -> None:
        super().__init__()
        self.downloads: list[tuple[float, float]] = []

    async def __aenter__(self) -> _TimedSlack:
        await self.start()
        return self

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        resp = await super()._handle_download(request)
        self.downloads.append((started, time.perf_counter()))
        return resp


# ------------------------------------------------------------------ 1. floors: plain copies
async def loopback_copy_into_fake(path: Path, size: int) -> tuple[float, float]:
    """GET the file from FakeSlack's file host and pipe it, chunk by chunk, into one streamed multipart
    `POST /v1/files` to the same FakeOpenAI the bot uploads to (which hashes what it receives, as it does for
    the bot's parts): the floor with the same bytes, the same fakes and the same work on the receiving side.
    Returns seconds and the CPU seconds this process used."""
    async with _TimedSlack() as slack, _StreamingOpenAI() as oai, aiohttp.ClientSession() as http:
        url = slack.add_file(name="big.csv", content_path=path)["url_private_download"]
        started, cpu = time.perf_counter(), time.process_time()
        async with http.get(url, headers={"Authorization": f"Bearer {slack.bot_token}"}) as got:
            got.raise_for_status()

            async def body() -> AsyncIterator[bytes]:
                async for chunk in got.content.iter_chunked(CHUNK_BYTES):
                    yield chunk

            with aiohttp.MultipartWriter("form-data") as form:
                form.append("user_data").set_content_disposition("form-data", name="purpose")
                form.append(body(), {"Content-Type": "text/csv"}).set_content_disposition(
                    "form-data", name="file", filename="big.csv"
                )
                headers = {"Authorization": f"Bearer {oai.api_key}"}
                async with http.post(f"{oai.base_url}/files", data=form, headers=headers) as posted:
                    posted.raise_for_status()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if [u.size for u in oai.received] != [size]:
            raise AssertionError(f"FakeOpenAI got {[u.size for u in oai.received]} of {size} bytes")
    return elapsed, cpu


async def loopback_copy_bare(path: Path, size: int) -> float:
    """GET the file from FakeSlack's file host and pipe it into a POST to a bare loopback sink that only
    counts bytes (the floor of earlier runs: no work at all on the receiving side); returns seconds."""
    received = 0

    async def sink(request: web.Request) -> web.Response:
        nonlocal received
        while chunk := await request.content.read(CHUNK_BYTES):
            received += len(chunk)
        return web.Response(text=str(received))

    app = web.Application()
    app.router.add_post("/sink", sink)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        sink_url = f"http://127.0.0.1:{runner.addresses[0][1]}/sink"
        async with _TimedSlack() as slack, aiohttp.ClientSession() as http:
            url = slack.add_file(name="big.csv", content_path=path)["url_private_download"]
            started = time.perf_counter()
            async with http.get(url, headers={"Authorization": f"Bearer {slack.bot_token}"}) as got:
                got.raise_for_status()

                async def body() -> AsyncIterator[bytes]:
                    async for chunk in got.content.iter_chunked(CHUNK_BYTES):
                        yield chunk

                async with http.post(sink_url, data=body()) as posted:
                    posted.raise_for_status()
            elapsed = time.perf_counter() - started
    finally:
        await runner.cleanup()
    if received != size:
        raise AssertionError(f"sink got {received} bytes of {size}")
    return elapsed


# ------------------------------------------------------------------ 2./3. the bot
@dataclass
class Transfer:
    """Times (perf_counter, this process) of one file's way through the bot."""

    posted: float = 0.0
    download: tuple[float, float] = (0.0, 0.0)
    upload: _Upload | None = None
    answered: float = 0.0
    rss: dict[str, float] = field(default_factory=dict)  # MiB: baseline, peak, hwm, after; "samples"
    part_digests: list[tuple[int, str]] | None = None  # streamed through the Uploads API: its parts
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds from post to answer: "bot", "fakes"

    def mb_s(self, size: int) -> float:
        assert self.upload is not None
        return size / MIB / (self.upload.finished - self.posted)


async def _post_and_wait(
    slack: _TimedSlack, oai: _StreamingOpenAI, *, path: Path, name: str, timeout_s: float
) -> Transfer:
    result = Transfer()
    file = slack.add_file(name=name, content_path=path, mimetype="text/csv", filetype="csv")
    result.posted = time.perf_counter()
    ts = str((await slack.user_posts(channel="C1", text="<@UBOT> 분석해줘", files=[file]))["ts"])
    await slack.wait_for(lambda: bool(oai.received), timeout=timeout_s)
    await slack.wait_for(lambda: any(t.startswith("Echo:") for t in answer_texts(slack, "C1", ts)), timeout=timeout_s)
    result.answered = time.perf_counter()
    result.upload = oai.received[0]
    result.part_digests = oai.part_digests[0] if oai.part_digests else None
    result.download = slack.downloads[0]
    return result


async def bot_in_process(path: Path, *, name: str, db_dir: Path, timeout_s: float) -> Transfer:
    async with (
        _TimedSlack() as slack,
        _StreamingOpenAI() as oai,
        run_bot(slack, oai, f"sqlite:///{db_dir / f'inproc-{name}.sqlite3'}"),  # fresh: event ids repeat
    ):
        return await _post_and_wait(slack, oai, path=path, name=name, timeout_s=timeout_s)


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5), so it is the peak from now on."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


async def _sample_rss(pid: int, samples: list[float]) -> None:
    while True:
        with contextlib.suppress(OSError):
            samples.append(_proc_status(pid)["VmRSS"])
        await asyncio.sleep(SAMPLE_EVERY_S)


async def bot_as_process(path: Path, *, name: str, work: Path, timeout_s: float) -> Transfer:
    async with _TimedSlack() as slack, _StreamingOpenAI() as oai:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_LEVEL": "INFO"}
        env.update(bot_env(slack, oai, f"sqlite:///{work / f'proc-{name}.sqlite3'}"))
        if "TMPDIR" in os.environ:
            env["TMPDIR"] = os.environ["TMPDIR"]
        log_path = work / f"bot-{name}.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "--env-file", str(work / "no.env"),
                cwd=ROOT, env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        sampler: asyncio.Task[None] | None = None
        try:
            await slack.wait_for(lambda: slack.socket_connections > 0, timeout=BOT_START_S)
            await asyncio.sleep(SETTLE_S)  # let start-up allocations settle before the baseline
            baseline = _proc_status(proc.pid)["VmRSS"]
            _reset_peak(proc.pid)
            cpu_before, own_before = _cpu_s(proc.pid), time.process_time()
            samples: list[float] = []
            sampler = asyncio.create_task(_sample_rss(proc.pid, samples))
            result = await _post_and_wait(slack, oai, path=path, name=name, timeout_s=timeout_s)
            sampler.cancel()
            result.cpu = {"bot": _cpu_s(proc.pid) - cpu_before, "fakes": time.process_time() - own_before}
            final = _proc_status(proc.pid)
            peak = max([*samples, final["VmHWM"]])
            result.rss = dict(baseline=baseline, peak=peak, hwm=final["VmHWM"], after=final["VmRSS"])
            result.rss["sampled_peak"] = max(samples, default=0.0)
            result.rss["samples"] = len(samples)
            return result
        except BaseException:
            print(f"--- bot log tail ({log_path}) ---\n{log_path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            if sampler is not None:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), BOT_STOP_S)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


# ------------------------------------------------------------------ report
def _intake_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*")}


def _check_upload(run: Transfer, utf8: Path, utf8_size: int, utf8_sha: str) -> str:
    """Whether OpenAI got exactly the UTF-8 text: the whole digest, or each part's against its slice."""
    assert run.upload is not None
    if run.upload.size != utf8_size:
        return f"MISMATCH ({run.upload.size} bytes of {utf8_size})"
    if run.part_digests is None:
        ok = run.upload.sha256 == utf8_sha
        return "identical UTF-8 (files.create)" if ok else f"MISMATCH (sha {run.upload.sha256[:12]}…)"
    with utf8.open("rb") as fh:
        for index, (size, sha) in enumerate(run.part_digests):
            if hashlib.sha256(fh.read(size)).hexdigest() != sha:
                return f"MISMATCH in part {index}"
    return f"identical UTF-8 ({len(run.part_digests)} parts through the Uploads API)"


def _phases(run: Transfer) -> str:
    assert run.upload is not None
    d0, d1 = run.download
    u0, u1 = run.upload.started, run.upload.finished
    return (
        f"post→download start {d0 - run.posted:.2f}s, download {d1 - d0:.2f}s, upload {u1 - u0:.2f}s "
        f"(first byte at OpenAI {u0 - d0:+.2f}s after the download began), last byte from Slack→file complete "
        f"{u1 - d1:.2f}s, file complete→answer {run.answered - u1:.2f}s"
    )


def _spread(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}–{max(values):{fmt}}" if len(values) > 1 else f"{values[0]:{fmt}}"


async def main_async(args: argparse.Namespace) -> int:
    before = _intake_dirs()
    timeout_s = args.timeout or 60.0 + args.mb * 1.0
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        work = Path(tmp)
        utf8 = work / "big.csv"
        started = time.perf_counter()
        utf8_size, utf8_sha = write_csv(utf8, args.mb * MIB)
        variants = [("utf-8", utf8, utf8_size)]
        if args.cp949:
            cp = work / "big-cp949.csv"
            variants.append(("cp949", cp, write_cp949(utf8, cp)))
        print(f"generated {utf8_size:,} bytes UTF-8 CSV in {time.perf_counter() - started:.1f}s", flush=True)

        rows: list[list[str]] = []
        details: list[str] = []
        ratios: dict[str, list[float]] = {}
        growths: dict[str, list[float]] = {}
        for label, path, size in variants:
            for run_no in range(1, args.runs + 1):
                tag = f"[{label} #{run_no}]"
                # Alternate floors and bot within one run, so all see the same moment of a shared machine.
                print(f"{tag} plain copy into FakeOpenAI …", flush=True)
                fake_s, fake_cpu = await loopback_copy_into_fake(path, size)
                print(f"{tag} plain copy into a bare sink …", flush=True)
                bare_s = await loopback_copy_bare(path, size)
                inproc = None
                if run_no == 1 and not args.skip_inprocess:
                    print(f"{tag} bot in this process …", flush=True)
                    inproc = await bot_in_process(
                        path, name=f"big-{label}-{run_no}.csv", db_dir=work, timeout_s=timeout_s
                    )
                print(f"{tag} bot as its own process …", flush=True)
                proc = await bot_as_process(path, name=f"big-{label}-{run_no}.csv", work=work, timeout_s=timeout_s)
                rss = proc.rss
                growth = rss["peak"] - rss["baseline"]
                fake_mb_s, bare_mb_s, bot_mb_s = size / MIB / fake_s, size / MIB / bare_s, proc.mb_s(size)
                ratios.setdefault(label, []).append(bot_mb_s / fake_mb_s)
                growths.setdefault(label, []).append(growth)
                rows.append(
                    [
                        label,
                        str(run_no),
                        f"{size / MIB:.1f}",
                        f"{fake_mb_s:.0f}",
                        f"{bare_mb_s:.0f}",
                        f"{inproc.mb_s(size):.0f}" if inproc else "-",
                        f"{bot_mb_s:.0f}",
                        f"{bot_mb_s / fake_mb_s:.2f}",
                        f"{bot_mb_s / bare_mb_s:.2f}",
                        f"{rss['baseline']:.0f}",
                        f"{rss['peak']:.0f}",
                        f"{growth:.0f}",
                        "ok" if growth < RSS_GOAL_MIB else "OVER",
                    ]
                )
                details.append(
                    f"{tag} plain copy into FakeOpenAI {fake_s:.2f}s ({fake_cpu:.2f}s CPU), "
                    f"into a bare sink {bare_s:.2f}s"
                )
                for what, run in (("in-process", inproc), ("process", proc)):
                    if run is not None:
                        checked = _check_upload(run, utf8, utf8_size, utf8_sha)
                        details.append(f"{tag} bot {what}: {_phases(run)}; upload {checked}")
                details.append(
                    f"{tag} bot process RSS MiB: baseline {rss['baseline']:.1f}, "
                    f"sampled peak {rss['sampled_peak']:.1f}, VmHWM since post {rss['hwm']:.1f}, "
                    f"after answer {rss['after']:.1f} ({rss['samples']:.0f} samples); CPU from post to answer: "
                    f"bot process {proc.cpu['bot']:.2f}s, this process (fakes) {proc.cpu['fakes']:.2f}s"
                )
    await asyncio.sleep(0.2)  # let the bots' cancelled work finish removing its temp dirs
    left = sorted(_intake_dirs() - before)

    header = ["file", "run", "MiB", "floor: copy into fake MiB/s", "floor: bare sink MiB/s", "bot in-proc MiB/s",
              "bot proc MiB/s", "bot/floor", "bot/bare", "RSS base", "RSS peak", "growth",
              f"<{RSS_GOAL_MIB}"]  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for label in ratios:
        print(
            f"[{label}] bot / floor (copy into the same FakeOpenAI): {_spread(ratios[label], '.2f')} over "
            f"{len(ratios[label])} runs; RSS growth {_spread(growths[label], '.0f')} MiB"
        )
    print()
    print("\n".join(details))
    names = f" {left}" if left else ""
    print(f"temp dirs left behind ({TEMP_PREFIX}* in {tempfile.gettempdir()}): {len(left)}{names}")
    return 0 if not left else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=500, help="size of the generated UTF-8 CSV in MiB (default 500)")
    parser.add_argument("--cp949", action="store_true", help="also move a CP949 copy (the conversion path)")
    parser.add_argument("--skip-inprocess", action="store_true", help="only run the bot as its own process")
    parser.add_argument("--runs", type=int, default=3, help="alternating floor/bot runs per file (default 3)")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds per wait (default 60 + 1 s per MiB)")
    args = parser.parse_args(argv)
    if not 1 <= args.mb <= 512:
        parser.error("--mb must be 1..512 (the bot's and OpenAI's file limit is 512 MiB)")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
