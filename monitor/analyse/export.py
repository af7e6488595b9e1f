"""Exports of posts and series to CSV, JSON Lines or Parquet, streamed in chunks.

Posts are read with a streaming cursor and written chunk by chunk, so a million
rows never sit in memory. Privacy settings of the *current* config apply to
what leaves the database, whatever was stored earlier:

- ``privacy.store_text: false`` → no ``text`` column;
- ``privacy.authors: keep`` → ``author`` as stored; ``hash`` → ``author`` is an
  HMAC-SHA256 pseudonym of the stored value (keyed by the service's author
  secret: ``privacy.hash_secret`` or the secret file beside the database; a
  random key for this export alone if neither exists), so authors can be
  counted but not named, even if handles were stored under an earlier
  ``keep``; ``drop`` → no ``author`` column.

Files are written to ``FILE.partial`` and renamed when complete, so an
interrupted export never leaves a truncated file under the real name.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from sqlalchemy import Engine

from monitor.config import Config
from monitor.errors import InputError, MissingExtra
from monitor.store.posts import post_chunks
from monitor.store.queries import series

__all__ = ["ExportFormat", "ExportSummary", "export_posts", "export_series", "post_columns"]

ExportFormat = Literal["csv", "jsonl", "parquet"]
CHUNK = 5000


@dataclass(frozen=True, slots=True)
class ExportSummary:
    rows: int
    path: str
    columns: tuple[str, ...]


class _Sink(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...
    def close(self) -> None: ...


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class _CsvSink:
    def __init__(self, handle: IO[str], columns: Sequence[str]) -> None:
        self._writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        self._writer.writeheader()
        self._handle = handle

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._writer.writerows({k: _plain(v) for k, v in r.items()} for r in rows)

    def close(self) -> None:
        self._handle.flush()


class _JsonlSink:
    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._handle.writelines(
            json.dumps({k: _plain(v) for k, v in r.items()}, ensure_ascii=False) + "\n"
            for r in rows
        )

    def close(self) -> None:
        self._handle.flush()


_ARROW_TYPES = {
    "int": "int64", "float": "float64", "str": "string", "bool": "bool_", "time": "timestamp",
}


class _ParquetSink:
    def __init__(self, path: Path, columns: dict[str, str]) -> None:
        # imported here: pyarrow is the optional `parquet` extra
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtra("Parquet export", "pyarrow", "parquet") from None

        fields = []
        for name, kind in columns.items():
            if kind == "time":
                fields.append(pa.field(name, pa.timestamp("us", tz="UTC")))
            else:
                fields.append(pa.field(name, getattr(pa, _ARROW_TYPES[kind])()))
        self._schema = pa.schema(fields)
        self._pa = pa
        self._writer = pq.ParquetWriter(str(path), self._schema, compression="zstd")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            batch = self._pa.RecordBatch.from_pylist(rows, schema=self._schema)
            self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def _open(out: str, fmt: ExportFormat, columns: dict[str, str]
          ) -> tuple[_Sink, IO[str] | None, Path | None]:
    if out == "-":
        if fmt == "parquet":
            raise InputError("--out", "parquet needs a file, not stdout")
        handle: IO[str] = sys.stdout
        sink: _Sink = _CsvSink(handle, list(columns)) if fmt == "csv" else _JsonlSink(handle)
        return sink, None, None
    target = Path(out)
    if not target.parent.exists():
        raise InputError("--out", f"directory {str(target.parent)!r} does not exist")
    partial = target.with_name(target.name + ".partial")
    if fmt == "parquet":
        return _ParquetSink(partial, columns), None, partial
    handle = partial.open("w", encoding="utf-8", newline="")
    sink = _CsvSink(handle, list(columns)) if fmt == "csv" else _JsonlSink(handle)
    return sink, handle, partial


def _write_all(out: str, fmt: ExportFormat, columns: dict[str, str],
               chunks: Iterator[list[dict[str, Any]]]) -> ExportSummary:
    if fmt not in ("csv", "jsonl", "parquet"):
        raise InputError("--format", f"expected csv, jsonl or parquet, got {fmt!r}")
    sink, handle, partial = _open(out, fmt, columns)
    total = 0
    try:
        for chunk in chunks:
            sink.write(chunk)
            total += len(chunk)
        sink.close()
    except BaseException:
        if handle is not None:
            handle.close()
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise
    if handle is not None:
        handle.close()
    if partial is not None:
        os.replace(partial, out)
    return ExportSummary(rows=total, path=out, columns=tuple(columns))


def post_columns(config: Config) -> dict[str, str]:
    """The columns a posts export has under *config*'s privacy settings."""
    cols = {"platform": "str", "key": "str", "created_at": "time", "url": "str", "lang": "str"}
    if config.privacy.authors != "drop":
        cols["author"] = "str"
    if config.privacy.store_text:
        cols["text"] = "str"
    cols.update({"tags": "str", "is_repost": "bool", "sensitive": "bool", "compound": "float",
                 "pos": "float", "neu": "float", "neg": "float"})
    return cols


def _export_key(config: Config) -> bytes:
    """The author-hash secret the service uses, else a random key for this export alone."""
    if config.privacy.hash_secret:
        return config.privacy.hash_secret.encode()
    from monitor.enrich.privacy import SECRET_FILE, default_secret_dir, load_or_create_secret

    secret_dir = default_secret_dir(config.database.url)
    if (secret_dir / SECRET_FILE).exists():
        return load_or_create_secret(secret_dir)
    return secrets.token_bytes(32)


def _pseudonymiser(config: Config) -> Any:
    key = _export_key(config)

    def pseudonym(value: str | None) -> str | None:
        if value is None:
            return None
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:24]

    return pseudonym


def _post_chunks(engine: Engine, config: Config, tags: Sequence[str], since: datetime,
                 until: datetime, columns: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    pseudonym = _pseudonymiser(config) if config.privacy.authors == "hash" else None
    fields = [c for c in columns if c != "tags"]
    for chunk in post_chunks(engine, tags, since, until, CHUNK):
        rows = []
        for post in chunk:
            out = {c: getattr(post, c) for c in fields}
            if pseudonym is not None:
                out["author"] = pseudonym(post.author)
            out["tags"] = " ".join(post.tags)
            rows.append(out)
        yield rows


def export_posts(engine: Engine, config: Config, out: str, fmt: ExportFormat, *,
                 tags: Sequence[str], since: datetime, until: datetime) -> ExportSummary:
    """Write posts created in ``[since, until)`` carrying any of *tags* (all if empty)."""
    columns = post_columns(config)
    return _write_all(out, fmt, columns,
                      _post_chunks(engine, config, tags, since, until, columns))


SERIES_COLUMNS = {"tag": "str", "bucket": "time", "posts": "int", "scored": "int",
                  "mean_compound": "float", "positive": "int", "neutral": "int",
                  "negative": "int"}


def export_series(engine: Engine, out: str, fmt: ExportFormat, *, tags: Sequence[str],
                  since: datetime, until: datetime, step: timedelta) -> ExportSummary:
    """Write the filled per-step series of *tags* (same numbers as ``monitor trends``)."""
    if not tags:
        raise InputError("--tag", "expected at least one tag for a series export")
    points = series(engine, tags, since, until, step)

    def chunks() -> Iterator[list[dict[str, Any]]]:
        for i in range(0, len(points), CHUNK):
            yield [
                {"tag": p.tag, "bucket": p.bucket, "posts": p.posts, "scored": p.scored,
                 "mean_compound": p.mean_compound, "positive": p.positive,
                 "neutral": p.neutral, "negative": p.negative}
                for p in points[i : i + CHUNK]
            ]

    return _write_all(out, fmt, SERIES_COLUMNS, chunks())
