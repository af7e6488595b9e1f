"""Historical posts from files: JSONL or CSV (optionally .gz), our own format or a
research dataset through a column mapping.

Our own format (JSONL keys or CSV columns): ``key`` (or ``id``), ``created_at``
(ISO-8601, epoch seconds, or Twitter's ``Wed Oct 18 14:03:11 +0000 2017``),
``text`` or ``html``, and optionally ``url``, ``author``, ``lang``, ``tags``
(a JSON list, or a string split on commas/spaces), ``is_repost``, ``sensitive``.

A mapping renames fields: ``{"key": "status_id", "author": "user.screen_name",
"tags": "entities.hashtags[].text"}``; dotted paths reach into nested JSON and
``[]`` collects from a list. Presets cover common #MeToo datasets.

This module only reads: it yields :class:`Post` records or :class:`Rejected`
lines and never touches the database. Reading is split in two so that an import
can parse in worker processes: :func:`read_records` reads raw records in file
order, a :class:`RecordParser` (picklable) turns each into posts.

Before any row is imported, :func:`record_parser` checks the CSV header
(columns found regardless of case) and the first rows' keys and date format;
those checks live in :mod:`monitor.sources.file_checks` and
:mod:`monitor.sources.file_dates`, safe line reading (line-size limit, non-UTF-8
bytes, broken gzip) in :mod:`monitor.sources.file_lines`.

It is long because both formats, the mapping language, the presets and that
read/parse split belong together: each piece is small and only used here.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

from monitor.errors import InputError
from monitor.models import Post, plausible_created
from monitor.sources.file_checks import (
    SAMPLE_ROWS,
    ReadOptions,
    check_keys,
    derived_key,
    resolve_columns,
)
from monitor.sources.file_dates import (
    DateReader,
    check_format,
    detect_format,
    parse_timestamp,
    parse_zone,
    twitter_snowflake_time,
)
from monitor.sources.file_lines import GzipBroken, Lines, bad_bytes, gzip_failure, open_text
from monitor.sources.tweets import tweet_lines

__all__ = [
    "FIELDS",
    "PARSER",
    "PRESETS",
    "ReadOptions",
    "Record",
    "RecordParser",
    "Rejected",
    "Row",
    "parse_mapping",
    "parse_timestamp",
    "read_posts",
    "read_records",
    "record_parser",
    "twitter_snowflake_time",
]

# a preset that names a parser of its own instead of a column mapping
PARSER = "@parser"

FIELDS = (
    "key",
    "created_at",
    "text",
    "html",
    "url",
    "author",
    "lang",
    "tags",
    "is_repost",
    "sensitive",
)

PRESETS: dict[str, dict[str, str]] = {
    # our own format, also what `monitor export posts --format jsonl` writes
    "native": {},
    # Twitter API v1.1 JSONL (full_text is preferred over text when present)
    "twitter-v1": {
        "key": "id_str",
        "created_at": "created_at",
        "text": "full_text|text",
        "lang": "lang",
        "author": "user.screen_name",
        "tags": "entities.hashtags[].text",
        "is_repost": "retweeted_status",
    },
    # Twitter/X API v2 JSONL: tweets or whole API answers, read by the same mapping as
    # the x collector (monitor.sources.tweets), so both store a tweet alike
    "twitter-v2": {PARSER: "twitter-v2"},
    # OpenML 43850, "#MeToo hatred tweets" (CSV)
    "openml-43850": {"key": "status_id", "created_at": "created_at", "text": "text"},
    # tweet-ID-only datasets (e.g. ICPSR 37447): the time comes from the snowflake id
    "tweet-ids": {"key": "tweet_id"},
}

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", "", "none", "null"}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that could not become a post; ``str()`` is ``FILE:LINE: reason``."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Row:
    """A post read from a file, with the line it came from."""

    line: int
    post: Post


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``["key=status_id", "author=user"]`` → mapping; raises InputError on bad items."""
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not path.strip():
            raise InputError("--map", f"expected FIELD=COLUMN, got {item!r}")
        if name not in FIELDS:
            raise InputError(
                "--map", f"unknown field {name!r}; expected one of {', '.join(FIELDS)}"
            )
        mapping[name] = path.strip()
    return mapping


@functools.cache
def _plain(path: str) -> bool:
    """True when *path* names one field: no alternatives, nesting or list."""
    return not any(c in path for c in "|.") and not path.endswith("[]") and path == path.strip()


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    """Resolve 'a.b', 'a[].b' and alternatives 'x|y' against a nested record."""
    if type(record) is dict and _plain(path):
        # a plain field of a parsed JSON object, the usual case: ~5x cheaper than below
        value = record.get(path)
        return None if value is None or value == "" else value
    for alternative in path.split("|"):
        value = _lookup_one(record, alternative.strip())
        if value not in (None, ""):
            return value
    return None


def _lookup_one(record: Any, path: str) -> Any:
    if path in record if isinstance(record, Mapping) else False:
        return record[path]
    current: Any = record
    parts = path.split(".")
    for index, part in enumerate(parts):
        if part.endswith("[]"):
            items = current.get(part[:-2]) if isinstance(current, Mapping) else None
            if not isinstance(items, list):
                return None
            rest = ".".join(parts[index + 1 :])
            return [(_lookup_one(item, rest) if rest else item) for item in items]
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
        if current is None:
            return None
    return current


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping | list):
        return bool(value)  # e.g. a retweeted_status object present
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name}: expected true/false, got {str(value)[:20]!r}")


def _flag(value: Any, name: str) -> bool:
    return False if value is None else _as_bool(value, name)


def _as_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if v not in (None, ""))
    text = str(value).strip()
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            loaded = None
        if isinstance(loaded, list):
            return tuple(str(v) for v in loaded if v not in (None, ""))
    return tuple(t for t in re.split(r"[,\s;|]+", text) if t)


def _to_post(record: Mapping[str, Any], parse: RecordParser, number: int,
             raw_size: int) -> Post:
    mapping = parse.mapping

    def get(name: str) -> Any:
        path = mapping.get(name)
        if path is None:
            if name == "key":
                return _lookup(record, "key|id")
            return _lookup(record, name)
        return _lookup(record, path)

    key = get("key") if parse.key_from == "column" else None
    if parse.key_from == "column":
        if key in (None, "") or isinstance(key, Mapping | list):
            raise ValueError(f"key: missing post id (column {mapping.get('key', 'key or id')!r})")
        key = str(key).strip()
    created_raw = get("created_at")
    if created_raw in (None, ""):
        if key is not None and key.isdigit() and len(key) >= 15:
            created_at = twitter_snowflake_time(key)
        else:
            raise ValueError("created_at: missing, and the id is not a Twitter snowflake")
    else:
        try:
            created_at = parse.dates(created_raw)
        except (ValueError, OverflowError, OSError) as exc:
            raise ValueError(f"created_at: {exc}") from None
    try:
        # the same bounds as every collector: no year 0001 or 9999 in the rollups (issue 11)
        created_at = plausible_created(created_at)
    except ValueError as exc:
        raise ValueError(f"created_at: {exc}") from None
    text, html = get("text"), get("html")
    for name, val in (("text", text), ("html", html)):
        if val is not None and not isinstance(val, str):
            raise ValueError(f"{name}: expected a string, got {type(val).__name__}")
    tags = _as_tags(get("tags")) + parse.default_tags
    author = get("author")
    lang = get("lang")
    url = get("url")
    if key is None:
        key = derived_key(parse.key_from, parse.name, number, created_at, text or html,
                          None if author in (None, "") else str(author))
    return Post(
        platform=parse.platform,
        key=key,
        created_at=created_at,
        url=str(url) if url not in (None, "") else None,
        author=str(author) if author not in (None, "") else None,
        text=text or None,
        html=html or None,
        lang=str(lang) if lang not in (None, "", "und") else None,
        tags=tags,
        is_repost=_flag(get("is_repost"), "is_repost"),
        sensitive=_flag(get("sensitive"), "sensitive"),
        raw_size=raw_size,
    )


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last in (".csv", ".tsv", ".txt"):
        return "tsv" if last == ".tsv" else "csv"
    raise InputError(
        str(path), "unknown file type; expected .jsonl, .ndjson, .csv or .tsv (optionally .gz)"
    )


@dataclass(frozen=True, slots=True)
class RecordParser:
    """Turns one raw record of a file into posts. Picklable and free of I/O, so the
    import can run it in worker processes while the file is read in order elsewhere.

    *kind* is ``jsonl``, ``csv`` (the delimiter is the reader's business) or a
    parser preset (``twitter-v2``); *header* holds the CSV columns.
    """

    name: str
    platform: str
    mapping: dict[str, str]
    default_tags: tuple[str, ...]
    kind: str
    header: tuple[str, ...] = ()
    dates: DateReader = field(default_factory=DateReader)
    key_from: str = "column"  # or row | content (file_checks.derived_key)

    def __call__(self, number: int, raw: Record) -> list[Row | Rejected]:
        """The posts (or the rejection) of record *number*; one JSONL line of an API
        answer can hold several tweets, each other record holds one post."""
        if isinstance(raw, Rejected):
            return [raw]
        if self.kind == "jsonl":
            assert isinstance(raw, str)
            return [_jsonl_record(raw, number, self)]
        if self.kind == "csv":
            assert isinstance(raw, list)
            return [_csv_record(raw, number, self)]
        assert isinstance(raw, str)
        return [Row(number, item) if isinstance(item, Post) else Rejected(self.name, number, item)
                for _, item in tweet_lines([raw], platform=self.platform,
                                           default_tags=self.default_tags)]


# one record as read: a JSONL line, CSV values, or a CSV record the reader could not split
Record = str | list[str] | Rejected


def _settings(path: Path, mapping: Mapping[str, str] | None) -> tuple[str, dict[str, str],
                                                                      str | None]:
    fmt = _format_of(path)
    mapping = dict(mapping or {})
    parser = mapping.pop(PARSER, None)
    if parser is not None and mapping:
        raise InputError("--map", f"--preset {parser} has its own mapping and takes no --map; "
                         "use --preset native with --map instead")
    if parser is not None and fmt != "jsonl":
        raise InputError(str(path), f"--preset {parser} reads JSONL (tweets or API answers)")
    return fmt, mapping, parser


def _opened(path: Path) -> IO[str]:
    try:
        return open_text(path)
    except OSError as exc:
        raise InputError(str(path), f"cannot open: {exc.strerror or exc}") from None


def record_parser(
    path: Path,
    platform: str,
    mapping: Mapping[str, str] | None = None,
    *,
    default_tags: tuple[str, ...] = (),
    options: ReadOptions | None = None,
) -> RecordParser:
    """The parser of *path*'s records. Before any row is imported this reads and
    checks a CSV file's header, then the first :data:`SAMPLE_ROWS` records: their
    keys (file_checks.check_keys) and their date format (file_dates.detect_format).
    """
    options = options or ReadOptions()
    fmt, fields, parser = _settings(path, mapping)
    name = str(path)
    zone = parse_zone(options.timezone)
    date_format = check_format(options.date_format) if options.date_format else None
    header: tuple[str, ...] = ()
    if fmt in ("csv", "tsv"):
        with _opened(path) as handle:
            lines = Lines(handle, options.max_line)
            try:
                first = next(csv.reader(lines, delimiter=_DELIMITER[fmt]), [])
            except csv.Error as exc:
                raise InputError(f"{name}:1", f"unreadable CSV header ({exc})") from None
            except GzipBroken as exc:
                raise InputError(f"{name}:1", gzip_failure(exc)) from None
        problem = bad_bytes(",".join(first)) or (lines.too_long() if lines.overlong else None)
        if problem:
            raise InputError(f"{name}:1", f"unreadable CSV header: {problem}")
        header = tuple(h.strip().lstrip("\ufeff") for h in first)
        if first:
            fields = resolve_columns(f"{name}:1", header, fields, FIELDS,
                                     need_key=options.key_from == "column")
    kind = parser or ("jsonl" if fmt == "jsonl" else "csv")
    parse = RecordParser(name, platform, fields, default_tags, kind, header,
                         DateReader(date_format, zone), options.key_from)
    if parser is None:
        date_format = _check_sample(path, parse, options, date_format)
        if date_format != parse.dates.fmt:
            parse = RecordParser(name, platform, fields, default_tags, kind, header,
                                 DateReader(date_format, zone), options.key_from)
    return parse


def _check_sample(path: Path, parse: RecordParser, options: ReadOptions,
                  date_format: str | None) -> str | None:
    """Check the keys of the file's first records, and detect their date format
    unless one was given; returns the date format to use."""
    keys: list[Any] = []
    times: list[Any] = []
    for _number, raw in islice(read_records(path, max_line=options.max_line), SAMPLE_ROWS):
        record = _sample_record(raw, parse)
        if record is None:
            continue
        keys.append(_lookup(record, parse.mapping.get("key", "key|id")))
        times.append(_lookup(record, parse.mapping.get("created_at", "created_at")))
    if options.key_from == "column":
        check_keys(parse.name, parse.mapping.get("key", "key or id"), keys)
    if date_format is None:
        date_format = detect_format(times, parse.name,
                                    parse.mapping.get("created_at", "created_at"))
    return date_format


def _sample_record(raw: Record, parse: RecordParser) -> Mapping[str, Any] | None:
    if isinstance(raw, list):
        return dict(zip(parse.header, raw, strict=False))
    if isinstance(raw, str):
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            return None
        return record if isinstance(record, dict) else None
    return None


def read_records(path: Path, *, start_line: int = 0, max_line: int | None = None
                 ) -> Iterator[tuple[int, Record]]:
    """``(line number, raw record)`` in file order, after *start_line* (resuming).

    Line numbers are 1-based physical lines for JSONL and CSV record start lines
    for CSV; blank lines and the CSV header are left out. A line over *max_line*
    characters, one that is not UTF-8 and the place where a truncated or corrupt
    ``.gz`` stops come out as :class:`Rejected` records (file_lines).
    """
    fmt = _format_of(path)
    name = str(path)
    with _opened(path) as handle:
        lines = Lines(handle) if max_line is None else Lines(handle, max_line)
        try:
            if fmt == "jsonl":
                for line in lines:
                    number = lines.number
                    if number <= start_line:
                        continue
                    if lines.overlong and lines.overlong[-1] == number:
                        yield number, Rejected(name, number, lines.too_long())
                    elif line.strip():
                        problem = bad_bytes(line)
                        yield number, (line if problem is None
                                       else Rejected(name, number, problem))
            else:
                yield from _csv_records(lines, name, start_line, _DELIMITER[fmt])
        except GzipBroken as exc:
            yield lines.number + 1, Rejected(name, lines.number + 1, gzip_failure(exc))


def read_posts(
    path: Path,
    platform: str,
    mapping: Mapping[str, str] | None = None,
    *,
    default_tags: tuple[str, ...] = (),
    start_line: int = 0,
    options: ReadOptions | None = None,
) -> Iterator[Row | Rejected]:
    """Yield a Row per good line and a Rejected per bad one, in file order.

    Lines up to and including *start_line* are skipped (resuming). Line numbers
    are 1-based physical lines for JSONL and CSV record start lines for CSV.
    """
    parse = record_parser(path, platform, mapping, default_tags=default_tags, options=options)
    max_line = options.max_line if options else None
    for number, raw in read_records(path, start_line=start_line, max_line=max_line):
        yield from parse(number, raw)


_DELIMITER = {"csv": ",", "tsv": "\t"}


def _jsonl_record(line: str, number: int, parse: RecordParser) -> Row | Rejected:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return Rejected(parse.name, number, f"invalid JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:  # "[[[[…" nested deeper than the parser's stack
        return Rejected(parse.name, number, "invalid JSON (nested too deeply)")
    if not isinstance(record, dict):
        return Rejected(parse.name, number,
                        f"expected a JSON object, got {type(record).__name__}")
    try:
        return Row(number, _to_post(record, parse, number, len(line)))
    except ValueError as exc:
        return Rejected(parse.name, number, str(exc))


def _csv_records(lines: Lines, name: str, start_line: int, delimiter: str
                 ) -> Iterator[tuple[int, Record]]:
    # a quoted field may span lines: let it grow to the line-size limit, no further
    csv.field_size_limit(max(lines.limit, _CSV_FIELD_DEFAULT))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        next(reader)  # the header: record_parser read and checked it
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"{name}:1", f"unreadable CSV header ({exc})") from None
    line_start = reader.line_num + 1
    while True:
        seen_overlong = len(lines.overlong)
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield line_start, Rejected(name, line_start, f"malformed CSV ({exc})")
            line_start = reader.line_num + 1
            continue
        number, line_start = line_start, reader.line_num + 1
        if number <= start_line:
            continue
        if len(lines.overlong) > seen_overlong:
            at = lines.overlong[-1]
            yield at, Rejected(name, at, lines.too_long())
        elif any(v.strip() for v in values):
            problem = next((p for p in map(bad_bytes, values) if p), None)
            yield number, values if problem is None else Rejected(name, number, problem)


_CSV_FIELD_DEFAULT = 131072


def _csv_record(values: list[str], number: int, parse: RecordParser) -> Row | Rejected:
    header = parse.header
    if len(values) != len(header):
        return Rejected(parse.name, number, f"expected {len(header)} columns, got {len(values)}")
    record = dict(zip(header, values, strict=True))
    try:
        size = sum(len(v) for v in values) + len(values)
        return Row(number, _to_post(record, parse, number, size))
    except ValueError as exc:
        return Rejected(parse.name, number, str(exc))
