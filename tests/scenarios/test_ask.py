"""`python -m bot ask` as a real process against the fake OpenAI: streaming, outputs, sessions, a pty, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import sys
from pathlib import Path

import pytest

from bot.i18n import t
from tests.conftest import ROOT, user_uploads
from tests.fakes.openai_fake import FakeOpenAI, GeneratedFile, Script

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
KOREAN_CSV = "지역,매출\n서울,100\n부산,200\n".encode("cp949")
TIMEOUT_S = 60


def ask_env(oai: FakeOpenAI, database_url: str, **extra: str) -> dict[str, str]:
    """Only what `ask` needs, plus a bogus Slack token that must be ignored."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OPENAI_API_KEY": oai.api_key,
        "OPENAI_BASE_URL": oai.base_url,
        "OPENAI_MODEL": "gpt-test",
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "not-a-token",
        **extra,
    }


async def start_ask(
    oai: FakeOpenAI, database_url: str, *args: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "ask",
        "--env-file",
        "",
        *args,
        cwd=ROOT,
        env={**ask_env(oai, database_url), **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def ask(
    oai: FakeOpenAI, database_url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await start_ask(oai, database_url, *args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_korean_cp949_csv_streams_the_answer_and_saves_the_chart(
    oai: FakeOpenAI, sqlite_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "매출.csv"
    data.write_bytes(KOREAN_CSV)
    out_dir = tmp_path / "out"
    hold = asyncio.Event()
    oai.scripts.append(
        Script(
            text="서울 매출이 가장 큽니다. 차트를 확인하세요.",
            code="import matplotlib.pyplot as plt\nplt.bar(['서울', '부산'], [100, 200])\n"
            "plt.savefig('/mnt/data/chart.png')",
            files=[GeneratedFile("chart.png", PNG, label="매출 차트")],
            hold=hold,
        )
    )
    proc = await start_ask(oai, sqlite_url, str(data), "지역별 매출을 비교해 줘", "--out", str(out_dir))
    assert proc.stdout is not None and proc.stderr is not None
    # The first words are on stdout while the response is still being generated: streamed, not buffered.
    first = await asyncio.wait_for(proc.stdout.read(8), TIMEOUT_S)
    assert first and oai.active_streams == 1
    hold.set()
    rest, err = await asyncio.wait_for(asyncio.gather(proc.stdout.read(), proc.stderr.read()), TIMEOUT_S)
    assert await proc.wait() == 0
    out = (first + rest).decode()
    assert out.startswith("서울 매출이 가장 큽니다.")
    chart = out_dir / "chart.png"
    assert chart.read_bytes() == PNG
    assert f"매출 차트 ({chart})" in out and "sandbox:" not in out
    assert out.rstrip().endswith(t("terminal.saved", "ko", path=chart))
    assert t("status.running_python", "ko") in err.decode() and "Traceback" not in err.decode()
    # The same intake as Slack: converted to UTF-8, profiled, the question after the file list.
    from bot.turn.chart_font import FONT_FILENAME

    (upload,) = [f for f in oai.files.values() if f["object"]["filename"] != FONT_FILENAME]
    assert upload["content"].decode("utf-8") == KOREAN_CSV.decode("cp949")
    prompt = oai.requests_to("POST", "/v1/responses")[0].json["input"][0]["content"][0]["text"]
    assert "original encoding cp949, converted to UTF-8" in prompt and "지역별 매출을 비교해 줘" in prompt


async def test_a_named_session_continues_with_its_files_and_conversation(
    oai: FakeOpenAI, sqlite_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\nNorth,10\nSouth,20\n", encoding="utf-8")
    out = str(tmp_path / "out")
    first = await ask(oai, sqlite_url, "--session", "q4", str(data), "Which region sold most?", "--out", out)
    second = await ask(oai, sqlite_url, "--session", "q4", "And the least?", "--out", out)
    again = await ask(oai, sqlite_url, "--session", "q4", str(data), "Total?", "--out", out)
    assert [r[0] for r in (first, second, again)] == [0, 0, 0]
    assert second[1].startswith("Echo: ") and "And the least?" in second[1]
    assert len(user_uploads(oai)) == 1  # the same file, uploaded once
    assert len(oai.requests_to("POST", "/v1/conversations")) == 1
    conversations = {r.json["conversation"] for r in oai.requests_to("POST", "/v1/responses")}
    assert len(conversations) == 1
    # The second turn still sees the file from the first run.
    assert "/mnt/data/sales.csv" in oai.requests_to("POST", "/v1/responses")[1].json["input"][0]["content"][0]["text"]
    # Without --session every run is a session of its own.
    await ask(oai, sqlite_url, "Hello?", "--out", out)
    assert len(oai.requests_to("POST", "/v1/conversations")) == 2


async def _read_until(master: int, seen: bytearray, marker: bytes, count: int) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while seen.count(marker) < count:
            chunk = await asyncio.to_thread(os.read, master, 4096)
            if not chunk:
                raise AssertionError(f"terminal closed; got {seen.decode(errors='replace')!r}")
            seen.extend(chunk)


async def test_follow_ups_are_asked_on_a_terminal_until_an_empty_line(
    oai: FakeOpenAI, sqlite_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\nNorth,10\n", encoding="utf-8")
    master, slave = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bot", "ask", "--env-file", "", str(data), "--out", str(tmp_path / "out")),
            cwd=ROOT,
            env=ask_env(oai, sqlite_url),
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        seen = bytearray()
        await _read_until(master, seen, b"> ", 1)
        os.write(master, b"first question\n")
        await _read_until(master, seen, b"> ", 2)
        os.write(master, b"second question\n")
        await _read_until(master, seen, b"> ", 3)
        os.write(master, b"\n")
        assert await asyncio.wait_for(proc.wait(), TIMEOUT_S) == 0
    finally:
        with contextlib.suppress(OSError):
            os.close(master)
    text = seen.decode()
    assert "Echo: " in text and text.index("first question") < text.index("second question")
    assert len(oai.requests_to("POST", "/v1/responses")) == 2
    assert len(user_uploads(oai)) == 1


@pytest.mark.parametrize(
    ("name", "content", "key", "params"),
    [
        pytest.param("missing.csv", None, "file.missing", {}, id="missing"),
        pytest.param("report.pdf", b"%PDF-1.4", "file.unsupported", {}, id="unsupported-type"),
        pytest.param("empty.csv", b"", "file.empty", {}, id="empty"),
        pytest.param(
            "big.csv",
            b"a,b\n" + b"1,2\n" * 300_000,
            "file.too_large",
            {"size_mb": "1", "limit_mb": "1"},
            id="too-large",
        ),
        pytest.param("image.csv", PNG, "file.unsupported", {}, id="png-named-csv"),
    ],
)
async def test_a_bad_file_is_one_line_exit_2_and_nothing_reaches_openai(
    oai: FakeOpenAI,
    sqlite_url: str,
    tmp_path: Path,
    name: str,
    content: bytes | None,
    key: str,
    params: dict[str, str],
) -> None:
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n", encoding="utf-8")
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    status, out, err = await ask(
        oai, sqlite_url, str(good), str(bad), "What is in these?", env={"FILE_SIZE_LIMIT_MB": "1"}
    )
    assert status == 2
    assert err.splitlines() == [t(key, "en", filename=name, **params)]
    assert out == ""
    assert oai.requests == []


async def test_an_openai_error_is_the_slack_sentence_and_exit_1(
    oai: FakeOpenAI, sqlite_url: str, tmp_path: Path
) -> None:
    oai.fail_next(
        "/v1/responses",
        status=429,
        code="insufficient_quota",
        message="You exceeded your current quota, please check your plan and billing details.",
    )
    status, _out, err = await ask(oai, sqlite_url, "How many rows?", "--out", str(tmp_path / "out"))
    assert status == 1
    assert err.splitlines() == [t("openai.quota", "en")]
    assert "Traceback" not in err
