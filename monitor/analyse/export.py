"""Exports of posts and series to CSV, JSON Lines or Parquet, streamed in chunks.

Posts are read with a streaming cursor and written chunk by chunk, so a million
rows never sit in memory. Privacy settings of the *current* config apply to
what leaves the database, whatever was stored earlier:

- ``privacy.store_text: false`` → no ``text`` column;
- ``privacy.authors: keep`` → ``author``, ``key`` and ``url`` as stored;
- ``hash`` → ``author`` is an HMAC-SHA256 pseudonym of the stored value, keyed
  by the database's author key (:func:`monitor.enrich.privacy.resolve_key`), so
  the same author has the same id in every export of that database and a
  handle stored under an earlier ``keep`` never leaves; ``drop`` → no
  ``author`` column;
- with ``hash`` and ``drop`` the post's ``key`` and ``url`` are not exported
  either, because on Mastodon and Bluesky they contain the author's account
  name or DID: under ``hash`` a ``post_id`` column (a keyed pseudonym of
  platform and key, stable across exports of the database) identifies the post
  instead; under ``drop`` nothing does.

Every export states the settings it was made under (:func:`export_metadata`):
CSV starts with one ``#`` comment line (read with ``skiprows=1``), JSON Lines
gets a sidecar ``FILE.meta.json`` (stderr with ``--out -``) so every line stays
a data row, Parquet carries it in the file's key-value metadata under
``hashtag_monitor``.

Files are written to ``FILE.partial`` and renamed when complete, so an
interrupted export never leaves a truncated file under the real name.

The format follows the file's extension (``.csv``, ``.jsonl``/``.ndjson``,
``.parquet``; :func:`format_for`); a ``--format`` that contradicts it is
refused rather than writing, say, CSV into ``x.parquet``. A post's ``tags`` are
a list in JSON Lines and Parquet (``list<string>``) and one space-separated
string in CSV.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from sqlalchemy import Engine

from monitor.config import Config
from monitor.errors import InputError, MissingExtra
from monitor.store.posts import post_chunks
from monitor.store.queries import series

__all__ = ["ExportFormat", "ExportSummary", "export_metadata", "export_posts", "export_series",
           "format_for", "post_columns"]

ExportFormat = Literal["csv", "jsonl", "parquet"]
CHUNK = 5000
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl", "parquet")
EXTENSIONS: dict[str, ExportFormat] = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# written uncompressed whatever the name says, so refused rather than mislabelled
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


def format_for(out: str, fmt: str | None) -> ExportFormat:
    """The format to write *out* in: from its extension, or *fmt* (``--format``).

    Refused: a *fmt* that contradicts a known extension, a compressed name, and a
    name that says nothing without a *fmt*. ``-`` (stdout) is CSV unless told.
    """
    if fmt is not None and fmt not in FORMATS:
        raise InputError("--format", f"expected csv, jsonl or parquet, got {fmt!r}")
    if out == "-":
        return fmt or "csv"
    name = Path(out).name.casefold()
    suffix = Path(name).suffix
    if suffix in COMPRESSED:
        raise InputError("--out", f"expected an uncompressed file (.csv, .jsonl or .parquet), "
                                  f"got {out!r}; compress it after the export")
    implied = EXTENSIONS.get(suffix)
    if implied is not None and fmt is not None and fmt != implied:
        raise InputError("--format", f"{out!r} names a {implied} file but --format is {fmt}; "
                                     f"drop --format or name the file .{fmt}")
    chosen = implied or fmt
    if chosen is None:
        raise InputError("--out", f"cannot tell the format from {out!r}: name it .csv, .jsonl "
                                  f"or .parquet, or pass --format")
    return chosen


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
    def __init__(self, handle: IO[str], columns: Sequence[str], meta: dict[str, Any]) -> None:
        handle.write("# " + _meta_line(meta) + "\n")
        self._writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        self._writer.writeheader()
        self._handle = handle

    def write(self, rows: list[dict[str, Any]]) -> None:
        # a list (a post's tags) is one space-separated cell: tags never contain spaces
        self._writer.writerows(
            {k: " ".join(v) if isinstance(v, list | tuple) else _plain(v) for k, v in r.items()}
            for r in rows)

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
    def __init__(self, path: Path, columns: dict[str, str], meta: dict[str, Any]) -> None:
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
            elif kind == "list":
                fields.append(pa.field(name, pa.list_(pa.string())))
            else:
                fields.append(pa.field(name, getattr(pa, _ARROW_TYPES[kind])()))
        self._schema = pa.schema(fields, metadata={
            b"hashtag_monitor": json.dumps(meta, ensure_ascii=False).encode("utf-8")})
        self._pa = pa
        self._writer = pq.ParquetWriter(str(path), self._schema, compression="zstd")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            batch = self._pa.RecordBatch.from_pylist(rows, schema=self._schema)
            self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def _open(out: str, fmt: ExportFormat, columns: dict[str, str], meta: dict[str, Any]
          ) -> tuple[_Sink, IO[str] | None, Path | None]:
    if out == "-":
        if fmt == "parquet":
            raise InputError("--out", "parquet needs a file, not stdout")
        handle: IO[str] = sys.stdout
        if fmt == "csv":
            return _CsvSink(handle, list(columns), meta), None, None
        # no sidecar for stdout: the metadata goes to stderr, the lines stay data
        sys.stderr.write(json.dumps(meta, ensure_ascii=False) + "\n")
        return _JsonlSink(handle), None, None
    target = Path(out)
    if not target.parent.exists():
        raise InputError("--out", f"directory {str(target.parent)!r} does not exist")
    partial = target.with_name(target.name + ".partial")
    if fmt == "parquet":
        return _ParquetSink(partial, columns, meta), None, partial
    handle = partial.open("w", encoding="utf-8", newline="")
    if fmt == "csv":
        return _CsvSink(handle, list(columns), meta), handle, partial
    return _JsonlSink(handle), handle, partial


def _write_all(out: str, fmt: ExportFormat, columns: dict[str, str],
               chunks: Iterator[list[dict[str, Any]]], meta: dict[str, Any]) -> ExportSummary:
    fmt = format_for(out, fmt)  # a format the file name contradicts is refused here too
    meta = {**meta, "columns": list(columns)}
    sink, handle, partial = _open(out, fmt, columns, meta)
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
        if fmt == "jsonl":
            sidecar = Path(out + ".meta.json")
            sidecar.write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n",
                               encoding="utf-8")
        os.replace(partial, out)
    return ExportSummary(rows=total, path=out, columns=tuple(columns))


def export_metadata(config: Config, kind: str, key_fingerprint: str | None = None
                    ) -> dict[str, Any]:
    """What an export states about itself: the privacy settings it was made under.

    Only settings, never a secret: the author key appears as its fingerprint.
    """
    privacy = config.privacy
    settings: dict[str, Any] = {"store_text": privacy.store_text, "authors": privacy.authors}
    for name in ("deletions", "retention"):  # present since the deletion/retention work
        value = getattr(privacy, name, None)
        if value is not None:
            settings[name] = (value.model_dump(mode="json") if hasattr(value, "model_dump")
                              else value)
    meta: dict[str, Any] = {
        "hashtag_monitor_export": kind,
        "made_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "privacy": settings,
    }
    if kind == "posts":
        meta["authors_exported_as"] = {
            "keep": "handles as stored", "hash": "keyed pseudonyms (no handles)",
            "drop": "not exported"}[privacy.authors]
        meta["post_ids"] = {
            "keep": "platform key and URL",
            "hash": "post_id: keyed pseudonym of the key (keys and URLs name authors)",
            "drop": "none (keys and URLs name authors)"}[privacy.authors]
        meta["text"] = "exported" if privacy.store_text else "not stored, not exported"
        if key_fingerprint:
            meta["author_key_fingerprint"] = key_fingerprint
    return meta


def _meta_line(meta: dict[str, Any]) -> str:
    """The metadata as one readable line (the CSV comment)."""
    privacy = meta["privacy"]
    parts = [f"hashtag-monitor {meta['hashtag_monitor_export']} export made {meta['made_at']}",
             "privacy: " + " ".join(
                 f"{k}={json.dumps(v, separators=(',', ':')) if isinstance(v, dict) else v}"
                 for k, v in privacy.items())]
    for name in ("authors_exported_as", "post_ids", "text", "author_key_fingerprint"):
        if name in meta:
            parts.append(f"{name}: {meta[name]}")
    return "; ".join(str(p).replace("\n", " ") for p in parts)


def post_columns(config: Config) -> dict[str, str]:
    """The columns a posts export has under *config*'s privacy settings."""
    if config.privacy.authors == "keep":
        cols = {"platform": "str", "key": "str", "created_at": "time", "url": "str",
                "lang": "str", "author": "str"}
    elif config.privacy.authors == "hash":  # keys and URLs name the author: keyed ids
        cols = {"platform": "str", "post_id": "str", "created_at": "time", "lang": "str",
                "author": "str"}
    else:  # drop: nothing that leads to the author, so no post identifier either
        cols = {"platform": "str", "created_at": "time", "lang": "str"}
    if config.privacy.store_text:
        cols["text"] = "str"
    cols.update({"tags": "list", "is_repost": "bool", "sensitive": "bool", "compound": "float",
                 "pos": "float", "neu": "float", "neg": "float"})
    return cols


def _keyed(key: bytes) -> Callable[[str | None], str | None]:
    def pseudonym(value: str | None) -> str | None:
        if value is None:
            return None
        return hmac.new(key, value.encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()[:24]

    return pseudonym


def _post_chunks(engine: Engine, config: Config, tags: Sequence[str], since: datetime,
                 until: datetime, columns: dict[str, str], key: bytes | None
                 ) -> Iterator[list[dict[str, Any]]]:
    pseudonym = _keyed(key) if key is not None else None
    fields = [c for c in columns if c not in ("tags", "post_id", "author")]
    for chunk in post_chunks(engine, tags, since, until, CHUNK):
        rows = []
        for post in chunk:
            out = {c: getattr(post, c) for c in fields}
            if "author" in columns:
                out["author"] = post.author if pseudonym is None else pseudonym(post.author)
            if "post_id" in columns and pseudonym is not None:
                out["post_id"] = pseudonym(f"{post.platform}\x00{post.key}")
            out["tags"] = list(post.tags)
            rows.append({c: out.get(c) for c in columns})
        yield rows


def export_posts(engine: Engine, config: Config, out: str, fmt: ExportFormat, *,
                 tags: Sequence[str], since: datetime, until: datetime) -> ExportSummary:
    """Write posts created in ``[since, until)`` carrying any of *tags* (all if empty).

    With ``authors: hash`` the database's author key is needed (a process
    that cannot find it refuses, in one line); a database without one yet gets
    it now.
    """
    columns = post_columns(config)
    key: bytes | None = None
    fingerprint = None
    if config.privacy.authors == "hash":
        from monitor.enrich.privacy import resolve_key

        author_key = resolve_key(config, engine, create=True)
        assert author_key is not None  # created when missing, else it raised
        key, fingerprint = author_key.chain[-1], author_key.fingerprint
    return _write_all(out, fmt, columns,
                      _post_chunks(engine, config, tags, since, until, columns, key),
                      export_metadata(config, "posts", fingerprint))


SERIES_COLUMNS = {"tag": "str", "bucket": "time", "posts": "int", "scored": "int",
                  "mean_compound": "float", "positive": "int", "neutral": "int",
                  "negative": "int"}


def export_series(engine: Engine, out: str, fmt: ExportFormat, *, tags: Sequence[str],
                  since: datetime, until: datetime, step: timedelta,
                  config: Config | None = None) -> ExportSummary:
    """Write the filled per-step series of *tags* (same numbers as ``monitor trends``);
    no tags: the followed ones (*config*'s ``hashtags``)."""
    if not tags and config is not None:
        tags = list(config.hashtags)
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

    return _write_all(out, fmt, SERIES_COLUMNS, chunks(),
                      export_metadata(config or Config(), "series"))
