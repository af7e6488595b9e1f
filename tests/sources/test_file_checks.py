"""Research files as they come: any column case, spreadsheet dates and ids, broken bytes,
broken gzip, giant lines; every problem one line naming the file (and line)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.rejections import RejectionReport, reason_group
from monitor.sources.file_dates import detect_format
from monitor.sources.files import ReadOptions, Rejected, Row, read_posts, read_records

HEADER = "Text,Id,Lenght,Created_at,Source,Favorite_count,Retweet_count,Lang\n"


def research_csv(path: Path, rows: int, *, day_max: int = 28, sci_ids: bool = False) -> Path:
    """A file like the one a #MeToo course project exported through R and a spreadsheet."""
    lines = [HEADER]
    for i in range(rows):
        day, hour, minute = 1 + i % day_max, i % 24, (i * 7) % 60
        ident = f"{1.1846e18 + (i % 45) * 1e14:.4E}" if sci_ids else str(1184600000000000000 + i)
        text = f"#MeToo post {i}, listening"
        lines.append(f'"{text}",{ident},{len(text)},10/{day}/2019 {hour}:{minute:02d},'
                     f"Twitter for iPhone,{i % 7},{i % 3},en\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def rows_of(items: list[Row | Rejected]) -> list[Row]:
    return [i for i in items if isinstance(i, Row)]


def rejected_of(items: list[Row | Rejected]) -> list[str]:
    return [str(i) for i in items if isinstance(i, Rejected)]


def test_columns_match_regardless_of_case_and_us_dates_are_detected(tmp_path: Path) -> None:
    path = research_csv(tmp_path / "metoo.csv", 60)
    items = list(read_posts(path, "twitter"))
    assert rejected_of(items) == []
    posts = [r.post for r in rows_of(items)]
    assert len(posts) == 60
    assert posts[0].key == "1184600000000000000"  # `Id` is the id column
    assert posts[0].text == "#MeToo post 0, listening" and posts[0].lang == "en"
    # 10/15/2019 is October 15th (month first), read as UTC
    assert posts[14].created_at == datetime(2019, 10, 15, 14, 38, tzinfo=UTC)


def test_an_ambiguous_date_format_is_refused_naming_the_option(tmp_path: Path) -> None:
    path = research_csv(tmp_path / "early.csv", 40, day_max=12)
    with pytest.raises(InputError) as info:
        list(read_posts(path, "twitter"))
    message = str(info.value)
    assert message.startswith(f"{path}: Created_at: dates like ")
    assert "--date-format '%m/%d/%Y %H:%M' or --date-format '%d/%m/%Y %H:%M'" in message
    # said which: read as day/month, in Paris time
    items = list(read_posts(path, "twitter", options=ReadOptions(
        date_format="%d/%m/%Y %H:%M", timezone="Europe/Paris")))
    first = rows_of(items)[1].post  # "10/2/2019 1:07" is 10 February, 01:07 in Paris
    assert first.created_at == datetime(2019, 2, 10, 0, 7, tzinfo=UTC)


@pytest.mark.parametrize(("values", "expected"), [
    (["2019-10-15T17:46:00Z", "1508097600"], None),
    (["10/15/2019 17:46", "10/3/2019 09:01"], "%m/%d/%Y %H:%M"),
    (["15/10/2019 17:46:05"], "%d/%m/%Y %H:%M:%S"),
    (["15.10.2019 17:46"], "%d.%m.%Y %H:%M"),
    (["10/15/2019 5:46 PM"], "%m/%d/%Y %I:%M %p"),
    (["yesterday"], None),
])
def test_detect_format(values: list[str], expected: str | None) -> None:
    assert detect_format(values, "f.csv", "created_at") == expected


def test_bad_options_are_one_line_naming_the_option(tmp_path: Path) -> None:
    path = research_csv(tmp_path / "metoo.csv", 5)
    with pytest.raises(InputError, match=r"^--timezone: expected an IANA time zone"):
        list(read_posts(path, "twitter", options=ReadOptions(timezone="Mars/Base")))
    with pytest.raises(InputError, match=r"^--date-format: expected a strptime format"):
        list(read_posts(path, "twitter", options=ReadOptions(date_format="day-month")))
    with pytest.raises(InputError, match=r"^--key-from: expected one of column, row, content"):
        ReadOptions(key_from="hash")


def test_spreadsheet_ids_are_refused_and_key_from_row_or_content_imports(tmp_path: Path) -> None:
    path = research_csv(tmp_path / "metoo.csv", 200, sci_ids=True)
    with pytest.raises(InputError) as info:
        list(read_posts(path, "twitter"))
    assert str(info.value).startswith(
        f"{path}: key column 'Id' holds ids in scientific notation ('1.1846E+18')")
    assert "--key-from row or --key-from content" in str(info.value)

    by_row = [r.post for r in rows_of(list(read_posts(
        path, "twitter", options=ReadOptions(key_from="row"))))]
    assert [p.key for p in by_row[:2]] == ["metoo.csv:2", "metoo.csv:3"]
    assert len({p.key for p in by_row}) == 200

    by_content = [r.post for r in rows_of(list(read_posts(
        path, "twitter", options=ReadOptions(key_from="content"))))]
    assert len({p.key for p in by_content}) == 200
    # the same time, text and author in another file is the same key
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    again = [r.post.key for r in rows_of(list(read_posts(
        copy, "twitter", options=ReadOptions(key_from="content"))))]
    assert again == [p.key for p in by_content]


def test_a_key_column_with_few_distinct_values_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps({"id": str(i % 5), "created_at": "2019-10-15T10:00:00Z",
                                        "text": "x"}) + "\n" for i in range(100)))
    with pytest.raises(InputError, match=r"key column 'key or id' has 5 distinct values in the "
                                         r"first 100 rows: keyed by it the file would collapse"):
        list(read_posts(path, "twitter"))


def test_a_header_without_the_required_columns_is_refused_before_rows(tmp_path: Path) -> None:
    path = tmp_path / "nokey.csv"
    path.write_text("Text,Created_at\n" + "\x00broken row\n" * 3, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_posts(path, "twitter").__next__()
    assert str(info.value) == (
        f"{path}:1: column(s) 'key or id' not in the header (have Text, Created_at); name the "
        "post id column with --map key=COLUMN, or derive keys with --key-from row or "
        "--key-from content")
    preset = tmp_path / "openml.csv"
    preset.write_text("status_id,text\n1,x\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"openml.csv:1: column\(s\) 'created_at' not in"):
        list(read_posts(preset, "twitter", {"key": "status_id", "created_at": "created_at",
                                            "text": "text"}))


def test_a_non_utf8_byte_rejects_its_line_only(tmp_path: Path) -> None:
    good = [json.dumps({"id": str(i), "created_at": "2019-10-15T10:00:00Z", "text": f"#metoo {i}"})
            .encode() for i in range(5)]
    good[2] = good[2].replace(b"#metoo 2", b"caf\xe9")
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b"\n".join(good) + b"\n")
    items = list(read_posts(path, "twitter"))
    assert [r.post.key for r in rows_of(items)] == ["0", "1", "3", "4"]
    assert rejected_of(items) == [
        f"{path}:3: not UTF-8 text (byte 0xE9 at column 63; if the file is Latin-1 or "
        "Windows-1252, convert it: iconv -f cp1252 -t utf-8)"]
    csv_path = tmp_path / "latin.csv"
    csv_path.write_bytes(b"id,created_at,text\n1,2019-10-15T10:00:00Z,ok\n"
                         b"2,2019-10-15T10:00:00Z,caf\xe9\n3,2019-10-15T10:00:00Z,ok\n")
    items = list(read_posts(csv_path, "twitter"))
    assert [r.post.key for r in rows_of(items)] == ["1", "3"]
    assert [s.split(": ")[0] for s in rejected_of(items)] == [f"{csv_path}:3"]


def test_gzip_that_is_not_gzip_or_is_truncated(tmp_path: Path) -> None:
    data = "".join(json.dumps({"id": str(i), "created_at": "2019-10-15T10:00:00Z",
                               "text": f"post {i} " + "x" * 200}) + "\n" for i in range(2000))
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_text(data, encoding="utf-8")
    with pytest.raises(InputError) as info:
        list(read_posts(fake, "twitter"))
    assert str(info.value) == (f"{fake}: not gzip data although the name ends in .gz "
                               "(decompress it first, or rename it without .gz)")
    packed = gzip.compress(data.encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    items = list(read_posts(cut, "twitter"))
    good = rows_of(items)
    assert good and [r.line for r in good] == list(range(1, len(good) + 1))
    assert rejected_of(items) == [
        f"{cut}:{len(good) + 1}: the gzip data ends here: the file is truncated (an incomplete "
        "download or copy?); the lines before it were read"]
    cut_csv = tmp_path / "cut.csv.gz"
    cut_csv.write_bytes(gzip.compress(b"id,created_at,text\n" + b"".join(
        b"%d,2019-10-15T10:00:00Z,%s\n" % (i, b"y" * 300) for i in range(2000)))[:3000])
    items = list(read_posts(cut_csv, "twitter"))
    assert rows_of(items) and "the gzip data ends here" in rejected_of(items)[-1]


def test_a_giant_line_is_rejected_without_being_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "giant.jsonl"
    row = json.dumps({"id": "1", "created_at": "2019-10-15T10:00:00Z", "text": "ok"})
    with path.open("w", encoding="utf-8") as handle:
        handle.write(row + "\n")
        handle.write('{"id": "2", "text": "' + "x" * (40 << 20) + '"}\n')
        handle.write(row.replace('"1"', '"3"') + "\n")
    limit = ReadOptions(max_line=1 << 20)
    tracemalloc.start()
    try:
        items = list(read_posts(path, "twitter", options=limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.post.key for r in rows_of(items)] == ["1", "3"]
    assert rejected_of(items) == [
        f"{path}:2: line longer than the line-size limit of 1,048,576 characters (raise it "
        "with --max-line-mb if the line is a real record)"]
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB for a 40 MiB line"
    # CSV: the same line in the middle of a file
    csv_path = tmp_path / "giant.csv"
    csv_path.write_text("id,created_at,text\n1,2019-10-15T10:00:00Z,a\n2,2019-10-15T10:00:00Z,"
                        + "y" * (3 << 20) + "\n3,2019-10-15T10:00:00Z,c\n", encoding="utf-8")
    items = list(read_posts(csv_path, "twitter", options=limit))
    assert [r.post.key for r in rows_of(items)] == ["1", "3"]
    assert [s.split(": ")[0] for s in rejected_of(items)] == [f"{csv_path}:3"]


def test_read_records_resumes_after_a_line(tmp_path: Path) -> None:
    path = research_csv(tmp_path / "metoo.csv", 10)
    numbers = [n for n, _ in read_records(path, start_line=5)]
    assert numbers == list(range(6, 12))


def test_rejections_are_grouped_by_reason() -> None:
    shown: list[str] = []
    report = RejectionReport(shown.append)
    for line in range(2, 1002):
        report(Rejected("f.csv", line, f"created_at: expected an ISO-8601 time, got "
                                       f"'10/{line % 28 + 1}/2019 17:46'"))
    report(Rejected("f.csv", 1002, "expected 8 columns, got 7"))
    assert shown == [
        "f.csv:2: created_at: expected an ISO-8601 time, got '10/3/2019 17:46'",
        "f.csv:3: created_at: expected an ISO-8601 time, got '10/4/2019 17:46'",
        "f.csv:4: created_at: expected an ISO-8601 time, got '10/5/2019 17:46'",
        "f.csv:1002: expected 8 columns, got 7"]
    assert report.summary() == [
        "rejected lines by reason (the first 3 of each are shown above):",
        "      1,000  created_at: expected an ISO-8601 time, got …",
        "          1  expected … columns, got …"]
    assert reason_group("not UTF-8 text (byte 0xE9 at column 17)") == \
        "not UTF-8 text (byte … at column …)"
