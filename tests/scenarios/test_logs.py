"""LOG_FORMAT=json: a real `python -m bot` process writes one JSON object per line, with the turn's context,
and no token, key or secret at any level."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.conftest import answer_texts, bot_process
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.slack import FakeSlack


async def test_json_logs_carry_the_turn_context_and_no_secret(
    slack: FakeSlack, oai: FakeOpenAI, sqlite_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "bot.log"
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "SLACK_SIGNING_SECRET": slack.signing_secret}
    async with bot_process(slack, oai, sqlite_url, log_path, env=env) as proc:
        csv = slack.add_file(name="sales.csv", content=b"id,region\n1,CELL-7d1f-CONTENT\n")
        message = await slack.user_posts(channel="C1", text="<@UBOT> how many rows?", files=[csv])
        await slack.wait_for(lambda: any(t.startswith("Echo:") for t in answer_texts(slack, "C1", message["ts"])))
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0

    text = log_path.read_text(encoding="utf-8")
    records: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records, "the bot logged nothing"
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    assert any(r["level"] == "DEBUG" for r in records)
    in_turn = [r for r in records if "turn_id" in r]
    assert in_turn, "no record carries the turn's context"
    for record in in_turn:
        assert (record["team"], record["channel"], record["thread_ts"]) == ("T1", "C1", message["ts"])
    assert any(r.get("openai_request_id") for r in in_turn), "the OpenAI request id is never logged"
    for secret in (slack.bot_token, slack.app_token, slack.signing_secret, oai.api_key):
        assert secret not in text
    assert "CELL-7d1f-CONTENT" not in text, "file contents were logged"
