"""`python -m bot forget`: thread references from a terminal, and the command end to end against the fakes."""

from __future__ import annotations

import pytest

from bot import cli
from bot.terminal.forget import ThreadRef, parse_thread
from tests.conftest import answer_texts, run_bot, user_file_ids
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "https://acme.slack.com/archives/C0123ABC/p1700000000000100",
            ThreadRef("C0123ABC", "1700000000.000100"),
            id="permalink",
        ),
        pytest.param(
            "https://acme.slack.com/archives/C0123ABC/p1700000005000200?thread_ts=1700000000.000100&cid=C0123ABC",
            ThreadRef("C0123ABC", "1700000000.000100"),
            id="permalink-of-a-reply",
        ),
        pytest.param("C1:1700000000.000100", ThreadRef("C1", "1700000000.000100"), id="channel-ts"),
        pytest.param("T1:C1:1700000000.000100", ThreadRef("C1", "1700000000.000100", "T1"), id="team-channel-ts"),
        pytest.param("C1", None, id="no-ts"),
        pytest.param("C1:yesterday", None, id="bad-ts"),
        pytest.param("https://acme.slack.com/messages/C1", None, id="not-a-message-link"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_thread(text: str, expected: ThreadRef | None) -> None:
    assert parse_thread(text) == expected


def test_bad_argument_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["forget", "yesterday's thread"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m bot forget") and err.count("\n") == 1


def test_missing_key_names_the_variable(capsys: pytest.CaptureFixture[str], sqlite_url: str, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert cli.main(["forget", "C1:1700000000.000100", "--env-file", ""]) == 2
    assert capsys.readouterr().err.startswith("configuration error: OPENAI_API_KEY")


@pytest.mark.parametrize("form", ["permalink", "channel-ts"])
async def test_forget_from_the_terminal(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    async with run_bot(slack, oai, sqlite_url) as running:
        csv_file = slack.add_file(name="sales.csv", content=b"a,b\n1,2\n")
        ts = str((await slack.user_posts(channel="C1", text="<@UBOT> sum a", files=[csv_file]))["ts"])
        await slack.wait_for(lambda: len(answer_texts(slack, "C1", ts)) == 1)
        assert await running.bot.scheduler.wait_idle(10)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("OPENAI_API_KEY", oai.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", oai.base_url)
    ref = f"https://acme.slack.com/archives/C1/p{ts.replace('.', '')}" if form == "permalink" else f"C1:{ts}"

    # The command runs its own event loop: run it in a worker thread, the fakes keep serving here.
    import asyncio

    status = await asyncio.to_thread(cli.main, ["forget", ref, "--env-file", ""])
    assert status == 0
    assert not user_file_ids(oai, list(oai.files)) and not oai.containers and not oai.responses
    assert all(c["deleted"] for c in oai.conversations.values())

    again = await asyncio.to_thread(cli.main, ["forget", ref, "--env-file", ""])
    assert again == 0, "nothing left to forget is not an error"
    assert not slack.calls_to("chat.postMessage")[1:], "the terminal posts nothing in Slack"
