"""Encoding detection and UTF-8 conversion of text files (pure file-to-file work)."""

import codecs
import io
from pathlib import Path

import openpyxl
import pytest

from bot.analysis.workspace import assign_paths
from bot.domain import SlackFile, ThreadFile
from bot.errors import FileUnsupported
from bot.turn.files_in import upload_name
from bot.turn.intake import _to_utf8, _workbook_profile
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


ASCII_ROWS = "".join(f"{i},plain english row {i},value\n" for i in range(100_000))  # about 3 MB
KOREAN_ROWS = "".join(f"{i},한국어 리뷰 {i} 배송이 빨라요,값\n" for i in range(2_000))
LATER_KOREAN = "id,text,note\n" + ASCII_ROWS + KOREAN_ROWS


@pytest.mark.parametrize(
    ("text", "data", "encoding", "rows"),
    [
        pytest.param(LATER_KOREAN, LATER_KOREAN.encode("cp949"), "cp949", 102_000, id="3mb-ascii-then-cp949-rows"),
        pytest.param(LATER_KOREAN, LATER_KOREAN.encode("utf-8"), "utf-8", 102_000, id="3mb-ascii-then-utf8-rows"),
        pytest.param(
            "a,b\n" + "x,y\n" * 30_000 + "똠,뷁\n",
            ("a,b\n" + "x,y\n" * 30_000 + "똠,뷁\n").encode("cp949"),
            "cp949",
            30_001,
            id="cp949-only-syllables-in-the-last-row",
        ),
        pytest.param(
            "a,b\n" + "x,y\n" * 70_000 + "한,글\n",
            ("a,b\n" + "x,y\n" * 70_000 + "한,글\n").encode("euc_kr"),
            "cp949",
            70_001,
            id="euc-kr-after-the-first-chunk",
        ),
    ],
)
def test_encoding_is_decided_from_the_whole_file(
    tmp_path: Path, text: str, data: bytes, encoding: str, rows: int
) -> None:
    src, dest = tmp_path / "raw", tmp_path / "utf8"
    src.write_bytes(data)
    profile = _to_utf8(src, dest, SlackFile(id="F1", name="later.csv"))
    uploaded = dest if profile.converted else src
    assert uploaded.read_bytes().decode("utf-8") == text
    assert profile.encoding == encoding
    assert profile.rows == rows
    assert profile.columns == tuple(text.split("\n", 1)[0].split(","))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"a,b\n" + b"1,2\n" * 100_000 + b"3,\x81 \n", id="a-byte-no-candidate-knows-after-3mb"),
        pytest.param(b"\xff\xfe" + "a,b\n".encode("utf-16-le") + b"\x00\xd8", id="utf16-with-a-broken-tail"),
    ],
)
def test_text_that_no_candidate_decodes_is_refused(tmp_path: Path, data: bytes) -> None:
    src, dest = tmp_path / "raw", tmp_path / "utf8"
    src.write_bytes(data)
    with pytest.raises(FileUnsupported):
        _to_utf8(src, dest, SlackFile(id="F1", name="broken.csv"))


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
        ThreadFile("F1", "file-1", "data.csv", 10, "shared as `data.csv` by <@U1>; 10 bytes"),
        ThreadFile("F2", "file-2", "data (2).csv", 20, "shared as `data.csv` by <@U2> (renamed); 20 bytes"),
        ThreadFile("F3", "file-1", "data.csv", 10, "same bytes shared again"),
    ]
    text = describe_files(files, new_ids={"F2"}, paths={"data.csv": "/mnt/data/file-1-data.csv"})
    assert text.splitlines()[1:] == [
        "- /mnt/data/file-1-data.csv: shared as `data.csv` by <@U1>; 10 bytes",
        "- /mnt/data/data (2).csv (new this turn): shared as `data.csv` by <@U2> (renamed); 20 bytes",
    ]


@pytest.mark.parametrize(
    ("name", "taken", "expected"),
    [
        pytest.param("data.csv", set(), "data.csv", id="free"),
        pytest.param("data.csv", {"data.csv"}, "data (2).csv", id="second"),
        pytest.param("data.csv", {"data.csv", "data (2).csv"}, "data (3).csv", id="third"),
        pytest.param("data", {"data"}, "data (2)", id="no-suffix"),
        pytest.param("a.b.csv", {"a.b.csv"}, "a.b (2).csv", id="dots"),
    ],
)
def test_upload_name(name: str, taken: set[str], expected: str) -> None:
    assert upload_name(name, taken) == expected


@pytest.mark.parametrize(
    ("names", "paths", "expected"),
    [
        pytest.param(["a.csv"], ["/mnt/data/a.csv"], {"a.csv": "/mnt/data/a.csv"}, id="exact"),
        pytest.param(["a.csv"], ["/mnt/data/file-9-a.csv"], {"a.csv": "/mnt/data/file-9-a.csv"}, id="prefixed"),
        pytest.param(
            ["data.csv", "data (2).csv"],
            ["/mnt/data/data (2).csv", "/mnt/data/data.csv"],
            {"data.csv": "/mnt/data/data.csv", "data (2).csv": "/mnt/data/data (2).csv"},
            id="same-original-name",
        ),
        pytest.param(
            ["2024.csv", "sales-2024.csv"],
            ["/mnt/data/sales-2024.csv"],
            {"sales-2024.csv": "/mnt/data/sales-2024.csv"},
            id="exact-beats-prefix-and-each-path-once",
        ),
        pytest.param(["gone.csv"], ["/mnt/data/other.csv"], {}, id="missing"),
    ],
)
def test_assign_paths(names: list[str], paths: list[str], expected: dict[str, str]) -> None:
    assert assign_paths(names, paths) == expected


def workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    book = openpyxl.Workbook()
    assert book.active is not None
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            workbook({"매출": [["월", "지역", "금액"], ["1월", "서울", 100], ["2월", "부산", 200]]}),
            "1 sheet: '매출' (2 data rows; 3 columns: 월, 지역, 금액)",
            id="one-sheet",
        ),
        pytest.param(
            workbook({"Sales": [["month", "amount"], ["Jan", 1]], "Empty": [], "Notes": [["note"]]}),
            "3 sheets: 'Sales' (1 data rows; 2 columns: month, amount), 'Empty' (0 data rows), "
            "'Notes' (0 data rows; 1 columns: note)",
            id="several-sheets",
        ),
        pytest.param(
            workbook({"Wide": [[f"c{i}" for i in range(40)], list(range(40))]}),
            "1 sheet: 'Wide' (1 data rows; 40 columns: " + ", ".join(f"c{i}" for i in range(30)) + " …)",
            id="wide-header-truncated",
        ),
    ],
)
def test_workbook_profile_lists_each_sheet(tmp_path: Path, data: bytes, expected: str) -> None:
    src = tmp_path / "book.xlsx"
    src.write_bytes(data)
    assert _workbook_profile(src, SlackFile(id="F1", name="book.xlsx")) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"PK\x03\x04" + bytes(200), id="truncated-zip"),
        pytest.param(b"month,amount\nJan,1\n", id="csv-named-xlsx"),
    ],
)
def test_broken_workbook_is_refused(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / "book.xlsx"
    src.write_bytes(data)
    with pytest.raises(FileUnsupported):
        _workbook_profile(src, SlackFile(id="F1", name="book.xlsx"))
