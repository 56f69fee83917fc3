"""Encoding detection and UTF-8 conversion of text files (pure file-to-file work)."""

import codecs
from pathlib import Path

import pytest

from bot.domain import SlackFile, ThreadFile
from bot.errors import FileUnsupported
from bot.turn.intake import _to_utf8
from bot.turn.prompt import describe_files

REVIEWS = '리뷰ID,평점,내용\n1,5,배송이 빠르고 품질이 좋아요\n2,1,"포장이 엉망, 다시는 안 삽니다"\n3,4,가격 대비 만족\n'


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        pytest.param(REVIEWS.encode("utf-8"), "utf-8", id="utf8"),
        pytest.param(codecs.BOM_UTF8 + REVIEWS.encode("utf-8"), "utf-8", id="utf8-bom"),
        pytest.param(REVIEWS.encode("cp949"), "cp949", id="cp949"),
        pytest.param(REVIEWS.encode("utf-16"), "utf-16", id="utf16-bom"),
    ],
)
def test_round_trip_is_identical_text(tmp_path: Path, data: bytes, encoding: str) -> None:
    src, dest = tmp_path / "raw", tmp_path / "utf8"
    src.write_bytes(data)
    profile = _to_utf8(src, dest, SlackFile(id="F1", name="reviews.csv"))
    uploaded = dest if profile.converted else src
    assert uploaded.read_bytes().decode("utf-8") == REVIEWS
    assert profile.converted == (data != REVIEWS.encode("utf-8")), "plain UTF-8 is not copied"
    assert profile.encoding == encoding
    assert profile.columns == ("리뷰ID", "평점", "내용")
    assert profile.rows == 3
    assert profile.delimiter == ","


def test_large_cp949_file_is_converted_across_chunk_boundaries(tmp_path: Path) -> None:
    text = "".join(f"{i},한국어 텍스트 {i},값\n" for i in range(60_000))
    src, dest = tmp_path / "raw", tmp_path / "utf8"
    src.write_bytes(text.encode("cp949"))
    profile = _to_utf8(src, dest, SlackFile(id="F1", name="big.csv"))
    assert profile.converted
    assert dest.read_text(encoding="utf-8") == text
    assert profile.rows == 59_999  # no header line: the first row counts as the header


def test_tsv_delimiter(tmp_path: Path) -> None:
    src, dest = tmp_path / "raw", tmp_path / "utf8"
    src.write_text("a\tb\n1\t2\n", encoding="utf-8")
    profile = _to_utf8(src, dest, SlackFile(id="F1", name="x.tsv"))
    assert profile.delimiter == "\t"
    assert profile.columns == ("a", "b")


def test_png_named_csv_is_refused(tmp_path: Path) -> None:
    src, dest = tmp_path / "raw", tmp_path / "utf8"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(FileUnsupported):
        _to_utf8(src, dest, SlackFile(id="F1", name="photo.csv"))


def test_describe_files_marks_new_files_and_uses_container_paths() -> None:
    files = [
        ThreadFile("F1", "file-1", "a.csv", 10, "10 bytes"),
        ThreadFile("F2", "file-2", "b.csv", 20, "20 bytes"),
    ]
    text = describe_files(files, new_ids={"F2"}, paths={"a.csv": "/mnt/data/file-1-a.csv"})
    assert "- /mnt/data/file-1-a.csv: 10 bytes" in text
    assert "- /mnt/data/b.csv (new this turn): 20 bytes" in text
