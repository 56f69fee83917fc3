"""Pure rendering: sandbox links removed (also when split across deltas), Markdown split at Slack's limits."""

import pytest

from bot.slack.render import StreamScrubber, fit_to_message, sandbox_link_labels, scrub_sandbox_links, split_markdown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[chart](sandbox:/mnt/data/chart.png)", "**chart**", id="link"),
        pytest.param("see ![plot](sandbox:/mnt/data/p.png) here", "see  here", id="image"),
        pytest.param("saved to sandbox:/mnt/data/out.csv.", "saved to out.csv.", id="bare-path"),
        pytest.param("[docs](https://example.com)", "[docs](https://example.com)", id="normal-link-kept"),
        pytest.param("a [b] c", "a [b] c", id="brackets-kept"),
        pytest.param("[한글 차트](sandbox:/mnt/data/차트.png)", "**한글 차트**", id="korean-label"),
    ],
)
def test_scrub_sandbox_links(text: str, expected: str) -> None:
    assert scrub_sandbox_links(text) == expected


TEXT = (
    "Revenue rose. [매출 차트](sandbox:/mnt/data/chart.png) and ![img](sandbox:/mnt/data/a.png) "
    "plus sandbox:/mnt/data/x.csv — [normal](https://x.y) [not a link] ok!"
)


@pytest.mark.parametrize("step", [1, 2, 3, 5, 8, 13, 1000])
def test_stream_scrubber_matches_whole_text_scrub_for_any_split(step: int) -> None:
    scrubber = StreamScrubber()
    shown = []
    for i in range(0, len(TEXT), step):
        piece = scrubber.feed(TEXT[i : i + step])
        assert "sandbox:" not in piece
        shown.append(piece)
    shown.append(scrubber.flush())
    assert "".join(shown) == scrub_sandbox_links(TEXT)


def test_stream_scrubber_does_not_hold_plain_text() -> None:
    scrubber = StreamScrubber()
    assert scrubber.feed("Hello, ") == "Hello, "
    assert scrubber.feed("world") == "world"


def test_stream_scrubber_releases_a_long_unclosed_bracket() -> None:
    scrubber = StreamScrubber()
    out = scrubber.feed("[" + "x" * 1000)
    assert out.startswith("[")


def test_split_prefers_paragraphs_and_keeps_everything() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 50 for i in range(100)]
    text = "\n\n".join(paragraphs)
    pieces = split_markdown(text, limit=1000)
    assert all(len(p) <= 1000 for p in pieces)
    assert [p for piece in pieces for p in piece.split("\n\n")] == paragraphs


def test_split_closes_and_reopens_a_code_fence() -> None:
    code = "```python\n" + "\n".join(f"print({i})" for i in range(300)) + "\n```"
    pieces = split_markdown("Intro\n\n" + code, limit=500)
    assert len(pieces) > 2
    for piece in pieces:
        assert len(piece) <= 500
        assert piece.count("```") % 2 == 0, piece
    assert pieces[1].startswith("```python")


def test_short_text_is_one_piece() -> None:
    assert split_markdown("hi") == ["hi"]
    assert split_markdown("") == []


def test_sandbox_link_labels_become_file_titles() -> None:
    text = (
        "See [월별 매출 차트](sandbox:/mnt/data/revenue.png) and ![](sandbox:/mnt/data/x.png), "
        "[표](sandbox:/mnt/data/t.csv)"
    )
    assert sandbox_link_labels(text) == {"revenue.png": "월별 매출 차트", "t.csv": "표"}


TABLE = "| a | b |\n|---|---|\n" + "\n".join(f"| {i} | {i * 2} |" for i in range(10))
CODE = "```python\n" + "\n".join(f"x = {i}" for i in range(10)) + "\n```"


@pytest.mark.parametrize(
    ("current", "text", "limit", "head", "new"),
    [
        pytest.param("abc", "def", 100, "def", [], id="fits"),
        pytest.param("", "x" * 50, 40, "", ["x" * 36, "x" * 14], id="empty-message-hard-split"),
    ],
)
def test_fit_to_message(current: str, text: str, limit: int, head: str, new: list[str]) -> None:
    assert fit_to_message(current, text, limit) == (head, new)


def test_fit_to_message_keeps_a_table_whole_when_it_fits_a_message() -> None:
    head, new = fit_to_message("intro " * 10, "\n\nmore text\n\n" + TABLE, limit=len(TABLE) + 20)
    assert head == "\n\nmore text"
    assert new == [TABLE]


def test_fit_to_message_closes_and_reopens_an_open_code_block() -> None:
    current = "Here is code:\n\n```python\nx = 1"
    head, new = fit_to_message(current, "\ny = 2\n" * 20 + "```", limit=80)
    assert (current + head).count("```") % 2 == 0
    assert new[0].startswith("```python")
    assert all(piece.count("```") % 2 == 0 for piece in new)
    assert "".join(new).replace("```python\n", "").count("y = 2") + head.count("y = 2") == 20
