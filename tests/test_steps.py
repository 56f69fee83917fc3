"""Step titles come from the code's first comment, else from what the code does."""

import pytest

from bot.turn.steps import STEP_TITLE_MAX_CHARS, step_title


@pytest.mark.parametrize(
    ("code", "lang", "expected"),
    [
        pytest.param("# Load the reviews\ndf = pd.read_csv('x.csv')", "en", "Load the reviews", id="first-comment"),
        pytest.param("\n  ## 월별 매출 합계  \nx = 1", "ko", "월별 매출 합계", id="hashes-and-blank-lines"),
        pytest.param("df = pd.read_csv('/mnt/data/reviews.csv')", "en", "Reading reviews.csv", id="reading-a-file"),
        pytest.param("df = pd.read_excel(r'/mnt/data/판매.xlsx')", "ko", "판매.xlsx 읽는 중", id="reading-korean"),
        pytest.param("df.plot()\nplt.savefig('a.png')", "en", "Drawing a chart", id="chart"),
        pytest.param("x = 1\n# later comment\n", "en", "Running Python", id="comment-after-code-ignored"),
        pytest.param("#!/usr/bin/env python\nprint(1)", "en", "Running Python", id="shebang-is-no-title"),
        pytest.param("", "ko", "Python 실행", id="empty"),
    ],
)
def test_step_title(code: str, lang: str, expected: str) -> None:
    assert step_title(code, lang) == expected  # type: ignore[arg-type]


def test_long_comment_is_cut() -> None:
    title = step_title("# " + "x" * 200, "en")
    assert len(title) == STEP_TITLE_MAX_CHARS and title.endswith("…")
