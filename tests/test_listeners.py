"""classify(): which Slack events become turns, and with which thread key."""

from typing import Any

import pytest

from bot.domain import ThreadKey
from bot.slack.listeners import classify


def event(**fields: Any) -> dict[str, Any]:
    base = {"type": "message", "user": "U1", "text": "hello", "ts": "100.1", "channel": "C1", "channel_type": "channel"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def decide(ev: dict[str, Any]) -> Any:
    return classify(ev, team_id="T1", bot_user_id="UBOT")


def test_mention_starts_a_session_keyed_by_its_ts() -> None:
    incoming = decide(event(type="app_mention", text="<@UBOT> 분석해줘"))
    assert incoming is not None
    assert incoming.thread == ThreadKey("T1", "C1", "100.1")
    assert incoming.starts_session and not incoming.is_thread_reply


def test_mention_in_a_thread_uses_the_root_ts() -> None:
    incoming = decide(event(text="<@UBOT> look", ts="105.0", thread_ts="100.1"))
    assert incoming.thread.thread_ts == "100.1"
    assert incoming.is_thread_reply and incoming.starts_session


def test_thread_reply_without_mention_only_continues_a_session() -> None:
    incoming = decide(event(text="부정 리뷰만 따로 보여줘", ts="106.0", thread_ts="100.1"))
    assert incoming is not None
    assert not incoming.starts_session


def test_dm_top_level_message_starts_a_session() -> None:
    incoming = decide(event(channel="D1", channel_type="im", text="sales by month?"))
    assert incoming.starts_session
    assert incoming.thread == ThreadKey("T1", "D1", "100.1")


def test_files_are_taken_from_the_event() -> None:
    files = [{"id": "F1", "name": "reviews.csv", "size": 10, "url_private_download": "http://x/f"}]
    incoming = decide(event(subtype="file_share", text="<@UBOT> go", files=files))
    assert [f.id for f in incoming.files] == ["F1"]
    assert incoming.files[0].url == "http://x/f"


@pytest.mark.parametrize(
    "ev",
    [
        pytest.param(event(text="just chatting"), id="top-level-without-mention"),
        pytest.param(event(subtype="message_changed", user=None, message={"text": "<@UBOT>"}), id="edit"),
        pytest.param(event(subtype="message_deleted", user=None), id="deletion"),
        pytest.param(event(subtype="channel_join", text="<@UBOT> joined"), id="system-subtype"),
        pytest.param(event(subtype="bot_message", user=None, bot_id="B9", text="<@UBOT>"), id="classic-bot"),
        pytest.param(event(bot_id="B9", text="<@UBOT> hi", user="U9"), id="other-app-bot"),
        pytest.param(event(user="UBOT", text="<@UBOT> hi"), id="own-message"),
        pytest.param(event(text="<@UBOT> hi", edited={"user": "U1", "ts": "101.0"}), id="mention-added-by-edit"),
        pytest.param(event(text="<@UOTHER> hi"), id="mentions-someone-else"),
        pytest.param(event(text="<@UOTHER> 이거 봐줘", ts="106.0", thread_ts="100.1"), id="reply-to-someone-else"),
    ],
)
def test_ignored(ev: dict[str, Any]) -> None:
    assert decide(ev) is None
