"""Who may use the bot, and which messages are questions: pure decisions, no I/O.

`allowed` applies the `ALLOWED_*` lists and `ALLOW_DMS`; `follow_up_rule` applies `FOLLOW_UPS` to a thread
reply that does not mention the bot; `is_question` tells a question from a reaction-like reply ("thanks",
"👍", "ㅇㅋ") that must cost nothing. The listener asks these before anything is recorded or sent.
"""

from __future__ import annotations

import enum
import re
import unicodedata

from bot.config import AccessPolicy
from bot.domain import strip_mentions

# Replies that only acknowledge an answer. Compared after lower-casing and dropping emoji and trailing
# `!`, `.`, `~`, `,`; a `?` keeps a message a question ("ok?"). Keep this list small: a word here is
# never answered, wherever it is sent.
ACKNOWLEDGEMENTS = frozenset(
    {
        "thanks",
        "thank you",
        "thanks a lot",
        "thx",
        "ty",
        "ok",
        "okay",
        "고마워",
        "고마워요",
        "고맙습니다",
        "감사",
        "감사해요",
        "감사합니다",
        "ㄱㅅ",
        "ㄳ",
        "ㅇㅋ",
        "ㅇㅋㅇㅋ",
        "오케이",
    }
)
# A question needs at least this many characters (mentions and surrounding spaces not counted).
MIN_QUESTION_CHARS = 2

_SHORTCODE = re.compile(r":[a-z0-9_+\-']+:", re.IGNORECASE)  # Slack's `:+1:`, `:skin-tone-2:`
_TRAILING = "!.~,。！ \t\n"
# Characters that only shape an emoji: variation selectors, zero-width joiner, keycap, skin tones.
_EMOJI_PARTS = {"\ufe0e", "\ufe0f", "\u200d", "\u20e3"}


class FollowUp(enum.Enum):
    """What to do with a thread reply that does not mention the bot."""

    ACCEPT = "accept"  # a turn, if the bot has a session in the thread
    IF_PARTICIPANT = "if_participant"  # a turn only from the session's participants
    IGNORE = "ignore"  # not addressed to the bot


def allowed(policy: AccessPolicy, *, team_id: str, channel: str, user_id: str, is_dm: bool) -> bool:
    """True if `user_id` may use the bot in `channel` of `team_id`.

    Every non-empty list of `policy` must contain the id; a DM passes the channel list unless
    `policy.allow_dms` is False.
    """
    if policy.teams and team_id not in policy.teams:
        return False
    if policy.users and user_id not in policy.users:
        return False
    if is_dm:
        return policy.allow_dms
    return not policy.channels or channel in policy.channels


def follow_up_rule(mode: str, *, is_dm: bool) -> FollowUp:
    """How `FOLLOW_UPS` (`anyone`, `participants`, `mention`) treats an un-mentioned thread reply.

    In a DM every message is addressed to the bot, so the mode does not restrict DMs.
    """
    if is_dm or mode == "anyone":
        return FollowUp.ACCEPT
    if mode == "participants":
        return FollowUp.IF_PARTICIPANT
    return FollowUp.IGNORE


def is_question(text: str, *, has_files: bool) -> bool:
    """False for a message that is only emoji, an acknowledgement ("thanks", "고마워", "ㅇㅋ") or shorter
    than two characters, mentions aside, with no file; True otherwise (a file is always worth a turn)."""
    if has_files:
        return True
    words = strip_mentions(text)
    if len(words) < MIN_QUESTION_CHARS:
        return False
    without_emoji = "".join(ch for ch in _SHORTCODE.sub(" ", words) if not _is_emoji_part(ch))
    normalized = " ".join(without_emoji.split()).rstrip(_TRAILING).lower()
    return bool(normalized) and normalized not in ACKNOWLEDGEMENTS


def _is_emoji_part(ch: str) -> bool:
    # "So" (other symbol) covers pictographs (👍, ❤, 🎉); "Sk" covers skin-tone modifiers.
    return ch in _EMOJI_PARTS or unicodedata.category(ch) in {"So", "Sk"}
