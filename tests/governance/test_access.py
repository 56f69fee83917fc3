"""access: who may use the bot, which un-mentioned replies count, and what is a question (table tests)."""

from __future__ import annotations

import pytest

from bot.config import AccessPolicy, Settings
from bot.governance.access import FollowUp, allowed, follow_up_rule, is_question

EVERYONE = AccessPolicy()
TEAM = AccessPolicy(teams=frozenset({"T1"}))
CHANNEL = AccessPolicy(channels=frozenset({"C1"}))
USERS = AccessPolicy(users=frozenset({"U1"}))
ALL_LISTS = AccessPolicy(teams=frozenset({"T1"}), channels=frozenset({"C1"}), users=frozenset({"U1"}))
NO_DMS = AccessPolicy(allow_dms=False)


@pytest.mark.parametrize(
    ("policy", "team", "channel", "user", "is_dm", "expected"),
    [
        pytest.param(EVERYONE, "T9", "C9", "U9", False, True, id="no-lists-everyone"),
        pytest.param(EVERYONE, "T9", "D9", "U9", True, True, id="no-lists-dm"),
        pytest.param(TEAM, "T1", "C9", "U9", False, True, id="team-listed"),
        pytest.param(TEAM, "T2", "C1", "U1", False, False, id="team-not-listed"),
        pytest.param(TEAM, "T2", "D1", "U1", True, False, id="team-not-listed-dm"),
        pytest.param(CHANNEL, "T9", "C1", "U9", False, True, id="channel-listed"),
        pytest.param(CHANNEL, "T9", "C2", "U9", False, False, id="channel-not-listed"),
        pytest.param(CHANNEL, "T9", "D1", "U9", True, True, id="dm-counts-as-allowed-channel"),
        pytest.param(USERS, "T9", "C9", "U1", False, True, id="user-listed"),
        pytest.param(USERS, "T9", "C9", "U2", False, False, id="user-not-listed"),
        pytest.param(USERS, "T9", "D2", "U2", True, False, id="user-not-listed-dm"),
        pytest.param(ALL_LISTS, "T1", "C1", "U1", False, True, id="all-lists-pass"),
        pytest.param(ALL_LISTS, "T2", "C1", "U1", False, False, id="all-lists-team-fails"),
        pytest.param(ALL_LISTS, "T1", "C2", "U1", False, False, id="all-lists-channel-fails"),
        pytest.param(ALL_LISTS, "T1", "C1", "U2", False, False, id="all-lists-user-fails"),
        pytest.param(ALL_LISTS, "T1", "D1", "U1", True, True, id="all-lists-dm"),
        pytest.param(NO_DMS, "T1", "D1", "U1", True, False, id="dms-off"),
        pytest.param(NO_DMS, "T1", "C1", "U1", False, True, id="dms-off-channel-still-fine"),
    ],
)
def test_allowed(policy: AccessPolicy, team: str, channel: str, user: str, is_dm: bool, expected: bool) -> None:
    assert allowed(policy, team_id=team, channel=channel, user_id=user, is_dm=is_dm) is expected


def test_allowed_reads_the_parsed_settings() -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_APP_TOKEN": "xapp-1",
        "OPENAI_API_KEY": "sk-1",
        "ALLOWED_CHANNELS": "C1, C2",
        "ALLOW_DMS": "false",
    }
    policy = Settings.from_env(env).access
    assert allowed(policy, team_id="T1", channel="C2", user_id="U1", is_dm=False)
    assert not allowed(policy, team_id="T1", channel="C3", user_id="U1", is_dm=False)
    assert not allowed(policy, team_id="T1", channel="D1", user_id="U1", is_dm=True)


@pytest.mark.parametrize(
    ("mode", "is_dm", "expected"),
    [
        pytest.param("anyone", False, FollowUp.ACCEPT, id="anyone"),
        pytest.param("participants", False, FollowUp.IF_PARTICIPANT, id="participants"),
        pytest.param("mention", False, FollowUp.IGNORE, id="mention"),
        pytest.param("participants", True, FollowUp.ACCEPT, id="participants-dm"),
        pytest.param("mention", True, FollowUp.ACCEPT, id="mention-dm"),
    ],
)
def test_follow_up_rule(mode: str, is_dm: bool, expected: FollowUp) -> None:
    assert follow_up_rule(mode, is_dm=is_dm) is expected


@pytest.mark.parametrize(
    ("text", "has_files", "expected"),
    [
        pytest.param("부정 리뷰만 따로 보여줘", False, True, id="korean-question"),
        pytest.param("<@UBOT> average rating?", False, True, id="mention-question"),
        pytest.param("왜?", False, True, id="two-chars"),
        pytest.param("ok?", False, True, id="ok-asked"),
        pytest.param("thanks, and by month?", False, True, id="thanks-plus-question"),
        pytest.param("k", False, False, id="one-char"),
        pytest.param("", False, False, id="empty"),
        pytest.param("<@UBOT>", False, False, id="mention-only"),
        pytest.param("<@UBOT> ?", False, False, id="mention-and-one-char"),
        pytest.param(":+1:", False, False, id="shortcode"),
        pytest.param(":thumbsup::skin-tone-2:", False, False, id="shortcode-with-skin-tone"),
        pytest.param("👍", False, False, id="unicode-emoji"),
        pytest.param("👍🏽 🎉", False, False, id="emoji-with-modifier"),
        pytest.param("❤️", False, False, id="emoji-with-selector"),
        pytest.param("👨‍👩‍👧", False, False, id="zwj-sequence"),
        pytest.param("thanks", False, False, id="thanks"),
        pytest.param("Thanks!", False, False, id="thanks-capital-bang"),
        pytest.param("thank you 🙏", False, False, id="thank-you-emoji"),
        pytest.param("고마워", False, False, id="gomawo"),
        pytest.param("고마워요~", False, False, id="gomawoyo"),
        pytest.param("감사합니다.", False, False, id="gamsahamnida"),
        pytest.param("ㅇㅋ", False, False, id="ok-jamo"),
        pytest.param("<@UBOT> 고마워 :+1:", False, False, id="mention-thanks-emoji"),
        pytest.param("k", True, True, id="file-with-short-text"),
        pytest.param("", True, True, id="file-without-text"),
        pytest.param("👍", True, True, id="file-with-emoji"),
    ],
)
def test_is_question(text: str, has_files: bool, expected: bool) -> None:
    assert is_question(text, has_files=has_files) is expected
