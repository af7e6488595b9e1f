"""What an import checks before it reads rows, and where a post's key comes from.

* CSV columns are found regardless of case (``Id`` is the ``id`` column), and a
  header without the columns the preset or ``--map`` needs is refused at once.
* The key column of the first rows is checked: ids in scientific notation
  (``1.1846E+18``, what a spreadsheet makes of a tweet id) or far fewer
  distinct ids than rows would collapse the file to a handful of posts, so the
  import is refused with one line offering ``--key-from``.
* ``--key-from row`` keys a post by file name and row number (a rerun of the
  same file adds nothing; the same post in two files is stored twice);
  ``--key-from content`` by a hash of its time, text and author (the same post
  in any file is stored once; two posts with the same time, text and author
  are one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.errors import InputError
from monitor.sources.file_dates import check_format, parse_zone
from monitor.sources.file_lines import MAX_LINE_CHARS

__all__ = ["KEY_FROM", "SAMPLE_ROWS", "ReadOptions", "check_keys", "derived_key",
           "resolve_columns"]

KEY_FROM = ("column", "row", "content")
# rows read before the import to check keys and detect the date format
SAMPLE_ROWS = 5000
# refuse a key column with fewer distinct values than this share of the rows
_MIN_DISTINCT_SHARE = 0.5
_MIN_ROWS_FOR_SHARE = 20
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
_HINT = "import with --key-from row or --key-from content (README: Importing historical datasets)"


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read a file beyond its column mapping: the import's flags."""

    date_format: str | None = None  # strptime format of created_at (None: detect)
    timezone: str | None = None  # IANA zone of times without one (None: UTC)
    key_from: str = "column"  # column | row | content
    max_line: int = MAX_LINE_CHARS  # characters

    def __post_init__(self) -> None:
        if self.key_from not in KEY_FROM:
            raise InputError("--key-from", f"expected one of {', '.join(KEY_FROM)}, "
                                           f"got {self.key_from!r}")
        if self.max_line < 1:
            raise InputError("--max-line-mb", f"expected at least 1, got {self.max_line}")
        # checked when given, before any file or database is opened
        parse_zone(self.timezone)
        if self.date_format is not None:
            check_format(self.date_format)


def _first_column(path: str) -> str:
    return path.split(".")[0].removesuffix("[]")


def resolve_columns(where: str, header: Sequence[str], mapping: Mapping[str, str],
                    fields: Sequence[str], *, need_key: bool) -> dict[str, str]:
    """*mapping* with each column spelled as the header spells it, plus every field
    of our own format the header has (case-insensitive).

    Raises InputError naming the missing columns (and the ones there are).
    """
    exact = set(header)
    folded: dict[str, str | None] = {}
    for column in header:
        key = column.casefold()
        folded[key] = None if key in folded and folded[key] != column else column

    def find(column: str) -> str | None:
        return column if column in exact else folded.get(column.casefold())

    out: dict[str, str] = {}
    missing: list[str] = []
    for field, path in mapping.items():
        alternatives = []
        present = False
        for alternative in (a.strip() for a in path.split("|")):
            found = find(alternative)
            if found is None and (head := find(_first_column(alternative))) is not None:
                # a nested path into a column (JSON in a cell): keep the rest as written
                found = head + alternative[len(_first_column(alternative)):]
            present = present or found is not None
            alternatives.append(found or alternative)
        if not present and (field != "key" or need_key):
            missing.append(path)
        out[field] = "|".join(alternatives)
    for field in fields:
        if field in out:
            continue
        names = ("key", "id") if field == "key" else (field,)
        found_name = next((f for f in map(find, names) if f is not None), None)
        if found_name is not None:
            out[field] = found_name
    if need_key and "key" not in out:
        missing.append("key or id")
    if missing:
        # a column name may hold a newline (a quoted CSV header): the error stays one line
        have = ", ".join(h.replace("\n", "\\n").replace("\r", "\\r") for h in header[:12]) \
            + (", …" if len(header) > 12 else "")
        key_missing = "key or id" in missing or mapping.get("key") in missing
        hint = ("; name the post id column with --map key=COLUMN, or derive keys with "
                "--key-from row or --key-from content" if key_missing else "")
        raise InputError(where, f"column(s) {', '.join(map(repr, missing))} not in the header "
                                f"(have {have}){hint}")
    return out


def check_keys(where: str, column: str, keys: Sequence[Any]) -> None:
    """Refuse a key column that cannot tell posts apart (see the module doc)."""
    values = [k for k in keys if k not in (None, "") and not isinstance(k, Mapping | list)]
    for value in values:
        if isinstance(value, float) or _SCIENTIFIC.fullmatch(str(value).strip()):
            raise InputError(where, f"key column {column!r} holds ids in scientific notation "
                                    f"({str(value)!r}): they were rounded (by a spreadsheet?) "
                                    f"and no longer tell posts apart; {_HINT}")
    distinct = len({str(v).strip() for v in values})
    if len(values) >= _MIN_ROWS_FOR_SHARE and distinct < _MIN_DISTINCT_SHARE * len(values):
        raise InputError(where, f"key column {column!r} has {distinct} distinct values in the "
                                f"first {len(values)} rows: keyed by it the file would "
                                f"collapse to about {distinct} posts; {_HINT}")


def derived_key(key_from: str, file: str, number: int, created_at: datetime,
                text: str | None, author: str | None) -> str:
    """The key of a post under ``--key-from row`` or ``--key-from content``."""
    if key_from == "row":
        return f"{Path(file).name}:{number}"
    digest = hashlib.sha256("\x1f".join(
        (created_at.isoformat(), text or "", author or "")).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]
