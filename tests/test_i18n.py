"""The message catalog: every key in every language, placeholders consistent, language detection."""

import re
from pathlib import Path

import pytest

from bot import errors
from bot.i18n import LANGUAGES, MESSAGES, detect_language, t


def test_every_key_has_every_language_with_the_same_placeholders() -> None:
    for key, texts in MESSAGES.items():
        assert set(texts) == set(LANGUAGES), key
        fields = {lang: set(re.findall(r"{(\w+)}", text)) for lang, text in texts.items()}
        assert fields["ko"] == fields["en"], key
        assert all(text.strip() for text in texts.values()), key


def test_every_error_message_key_exists() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.BotError)]
    assert len(classes) > 10
    for cls in classes:
        assert cls.message_key in MESSAGES, cls.__name__


def test_every_key_used_in_code_exists() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in Path("bot").rglob("*.py"))
    namespaces = "|".join(sorted({key.split(".")[0] for key in MESSAGES}))
    used = set(re.findall(rf"""["']((?:{namespaces})\.[a-z_]+)["']""", source))
    assert {"turn.stopped", "status.thinking", "openai.incomplete_tool_limit"} <= used, "the pattern is wrong"
    assert used <= MESSAGES.keys(), used - MESSAGES.keys()


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        pytest.param("<@UBOT> 이 리뷰 데이터의 주요 키워드를 분석해줘", "ko", id="korean-with-mention"),
        pytest.param("부정 리뷰만 따로 보여줘", "ko", id="korean"),
        pytest.param("<@UBOT> which region grew fastest?", "en", id="english"),
        pytest.param("<@UBOT>", "en", id="mention-only"),
        pytest.param("plot 매출 by month", "ko", id="mixed-counts-as-korean"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_missing_params_show_a_dash_not_a_crash() -> None:
    assert "request id: -" in t("openai.failed", "en")
    assert "`a.csv`" in t("file.empty", "ko", filename="a.csv")
