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
lines and never touches the database.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

from monitor.errors import InputError
from monitor.models import Post

__all__ = [
    "FIELDS",
    "PRESETS",
    "Rejected",
    "Row",
    "parse_mapping",
    "parse_timestamp",
    "read_posts",
    "twitter_snowflake_time",
]

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
    # Twitter API v2 JSONL
    "twitter-v2": {
        "key": "id",
        "created_at": "created_at",
        "text": "text",
        "lang": "lang",
        "author": "author_id",
        "tags": "entities.hashtags[].tag",
    },
    # OpenML 43850, "#MeToo hatred tweets" (CSV)
    "openml-43850": {"key": "status_id", "created_at": "created_at", "text": "text"},
    # tweet-ID-only datasets (e.g. ICPSR 37447): the time comes from the snowflake id
    "tweet-ids": {"key": "tweet_id"},
}

_TWITTER_EPOCH_MS = 1288834974657
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


def twitter_snowflake_time(tweet_id: str) -> datetime:
    """The creation time encoded in a Twitter snowflake id (ids since Nov 2010)."""
    value = int(tweet_id)
    if value < (1 << 22):
        raise ValueError(f"id {tweet_id!r} is not a snowflake id (too small to carry a time)")
    return datetime.fromtimestamp(((value >> 22) + _TWITTER_EPOCH_MS) / 1000, tz=UTC)


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601, epoch seconds (int/float/str), or RFC 2822 / Twitter v1.1 format → UTC."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a timestamp, got {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    text = str(value).strip()
    if not text:
        raise ValueError("expected a timestamp, got an empty value")
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        twitter = re.fullmatch(
            r"\w{3} (\w{3}) (\d{2}) (\d{2}:\d{2}:\d{2}) ([+-]\d{4}) (\d{4})", text
        )
        try:
            if twitter:
                mon, day, clock, zone, year = twitter.groups()
                parsed = datetime.strptime(
                    f"{day} {mon} {year} {clock} {zone}", "%d %b %Y %H:%M:%S %z"
                )
            else:
                parsed = parsedate_to_datetime(text)
        except (ValueError, TypeError):
            raise ValueError(
                f"expected an ISO-8601 time, epoch seconds or 'Wed Oct 18 14:03:11 +0000 2017',"
                f" got {text[:40]!r}"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    """Resolve 'a.b', 'a[].b' and alternatives 'x|y' against a nested record."""
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


def _to_post(
    record: Mapping[str, Any],
    mapping: Mapping[str, str],
    platform: str,
    default_tags: tuple[str, ...],
    raw_size: int,
) -> Post:
    def get(name: str) -> Any:
        path = mapping.get(name)
        if path is None:
            if name == "key":
                return _lookup(record, "key|id")
            return _lookup(record, name)
        return _lookup(record, path)

    key = get("key")
    if key in (None, "") or isinstance(key, Mapping | list):
        raise ValueError(f"key: missing post id (column {mapping.get('key', 'key or id')!r})")
    key = str(key).strip()
    created_raw = get("created_at")
    if created_raw in (None, ""):
        if key.isdigit() and len(key) >= 15:
            created_at = twitter_snowflake_time(key)
        else:
            raise ValueError("created_at: missing, and the id is not a Twitter snowflake")
    else:
        try:
            created_at = parse_timestamp(created_raw)
        except ValueError as exc:
            raise ValueError(f"created_at: {exc}") from None
    text, html = get("text"), get("html")
    for name, val in (("text", text), ("html", html)):
        if val is not None and not isinstance(val, str):
            raise ValueError(f"{name}: expected a string, got {type(val).__name__}")
    tags = _as_tags(get("tags")) + default_tags
    author = get("author")
    lang = get("lang")
    url = get("url")
    return Post(
        platform=platform,
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


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


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


def read_posts(
    path: Path,
    platform: str,
    mapping: Mapping[str, str] | None = None,
    *,
    default_tags: tuple[str, ...] = (),
    start_line: int = 0,
) -> Iterator[Row | Rejected]:
    """Yield a Row per good line and a Rejected per bad one, in file order.

    Lines up to and including *start_line* are skipped (resuming). Line numbers
    are 1-based physical lines for JSONL and CSV record start lines for CSV.
    """
    fmt = _format_of(path)
    mapping = dict(mapping or {})
    name = str(path)
    try:
        handle = _open_text(path)
    except OSError as exc:
        raise InputError(name, f"cannot open: {exc.strerror or exc}") from None
    with handle:
        try:
            if fmt == "jsonl":
                yield from _read_jsonl(handle, name, platform, mapping, default_tags, start_line)
            else:
                yield from _read_csv(
                    handle,
                    name,
                    platform,
                    mapping,
                    default_tags,
                    start_line,
                    "\t" if fmt == "tsv" else ",",
                )
        except UnicodeDecodeError as exc:
            raise InputError(name, f"not UTF-8 text ({exc.reason})") from None


def _read_jsonl(
    handle: IO[str],
    name: str,
    platform: str,
    mapping: Mapping[str, str],
    default_tags: tuple[str, ...],
    start_line: int,
) -> Iterator[Row | Rejected]:
    for number, line in enumerate(handle, start=1):
        if number <= start_line or not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Rejected(name, number, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            yield Rejected(name, number, f"expected a JSON object, got {type(record).__name__}")
            continue
        try:
            yield Row(number, _to_post(record, mapping, platform, default_tags, len(line)))
        except ValueError as exc:
            yield Rejected(name, number, str(exc))


def _read_csv(
    handle: IO[str],
    name: str,
    platform: str,
    mapping: Mapping[str, str],
    default_tags: tuple[str, ...],
    start_line: int,
    delimiter: str,
) -> Iterator[Row | Rejected]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"{name}:1", f"unreadable CSV header ({exc})") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    wanted = {p.split(".")[0].split("|")[0].removesuffix("[]") for p in mapping.values()}
    missing = sorted(w for w in wanted if w not in header)
    if missing:
        raise InputError(
            f"{name}:1",
            f"column(s) {', '.join(map(repr, missing))} not in the "
            f"header (have {', '.join(header[:12])})",
        )
    line_start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield Rejected(name, line_start, f"malformed CSV ({exc})")
            line_start = reader.line_num + 1
            continue
        number, line_start = line_start, reader.line_num + 1
        if number <= start_line or not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield Rejected(name, number, f"expected {len(header)} columns, got {len(values)}")
            continue
        record = dict(zip(header, values, strict=True))
        try:
            size = sum(len(v) for v in values) + len(values)
            yield Row(number, _to_post(record, mapping, platform, default_tags, size))
        except ValueError as exc:
            yield Rejected(name, number, str(exc))
