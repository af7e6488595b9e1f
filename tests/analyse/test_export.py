"""Exports: every format, chunked streaming across many rows, and privacy settings applied
to what leaves the database."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from monitor.analyse.export import CHUNK, export_posts, export_series
from monitor.config import parse_config
from monitor.errors import InputError
from monitor.store.write import write_batch
from tests.analyse.seed import scored

T0 = datetime(2026, 4, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def seed(engine: Engine) -> None:
    write_batch(engine, [
        scored("1", T0 + timedelta(minutes=1), ("metoo", "howiwillchange"), 0.5,
               text="first", author="alice@example.social"),
        scored("2", T0 + timedelta(minutes=2), ("notallmen",), -0.3, text="second",
               author="bob@example.social"),
        scored("3", T0 + timedelta(minutes=3), ("metoo",), None, text="third, \"quoted\"\nline",
               author=None),
        scored("4", T0 + 2 * DAY, ("metoo",), 0.1, text="out of range", author="carol"),
    ])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_posts_export_every_format(engine: Engine, tmp_path: Path, fmt: str) -> None:
    seed(engine)
    config = parse_config({"privacy": {"store_text": True, "authors": "keep"}}, env={})
    out = tmp_path / f"posts.{fmt}"
    summary = export_posts(engine, config, str(out), fmt,  # type: ignore[arg-type]
                           tags=["metoo"], since=T0, until=T0 + DAY)
    assert summary.rows == 2
    if fmt == "csv":
        with out.open(newline="", encoding="utf-8") as fh:
            assert fh.readline().startswith("# hashtag-monitor posts export made ")
            rows = list(csv.DictReader(fh))
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        rows = pq.read_table(out).to_pylist()
    assert [r["key"] for r in rows] == ["1", "3"]
    # a list where the format has lists; one space-separated cell in CSV
    assert rows[0]["tags"] == ("howiwillchange metoo" if fmt == "csv"
                               else ["howiwillchange", "metoo"])
    assert rows[0]["author"] == "alice@example.social"
    assert rows[1]["text"] == "third, \"quoted\"\nline"
    assert str(rows[0]["created_at"]).startswith("2026-04-01")
    if fmt == "parquet":
        assert rows[0]["created_at"] == T0 + timedelta(minutes=1)
        assert rows[1]["compound"] is None


def test_privacy_drops_text_and_pseudonymises_authors(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    hashed = parse_config({"privacy": {"store_text": False, "authors": "hash",
                                       "hash_secret": "k" * 32}}, env={})
    out = tmp_path / "p.jsonl"
    export_posts(engine, hashed, str(out), "jsonl", tags=[], since=T0, until=T0 + DAY)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    assert all("text" not in r for r in rows)
    handles = {"alice@example.social", "bob@example.social"}
    assert not handles & {r["author"] for r in rows}
    assert rows[0]["author"] and len(rows[0]["author"]) == 24
    assert rows[2]["author"] is None
    # keys and URLs name the author on Mastodon and Bluesky: a keyed post_id instead
    assert all("key" not in r and "url" not in r for r in rows)
    assert len({r["post_id"] for r in rows}) == 3 and len(rows[0]["post_id"]) == 24
    # the same secret gives the same pseudonym in the next export (authors can be counted)
    again = tmp_path / "again.jsonl"
    export_posts(engine, hashed, str(again), "jsonl", tags=[], since=T0, until=T0 + DAY)
    assert json.loads(again.read_text().splitlines()[0])["author"] == rows[0]["author"]
    dropped = parse_config({"privacy": {"authors": "drop"}}, env={})
    out = tmp_path / "p.csv"
    export_posts(engine, dropped, str(out), "csv", tags=[], since=T0, until=T0 + DAY)
    header = out.read_text().splitlines()[1].split(",")
    assert "author" not in header and "text" not in header and "key" not in header


def test_streams_many_rows_in_chunks(engine: Engine, tmp_path: Path) -> None:
    n = CHUNK * 2 + 17
    write_batch(engine, [scored(f"k{i:06d}", T0 + timedelta(seconds=i), ("metoo", "bulk"), 0.2)
                         for i in range(n)])
    config = parse_config({"privacy": {"authors": "keep"}}, env={})
    out = tmp_path / "big.parquet"
    summary = export_posts(engine, config, str(out), "parquet", tags=["bulk"], since=T0,
                           until=T0 + DAY)
    table = pq.read_table(out)
    assert summary.rows == table.num_rows == n
    assert table.column("key")[n - 1].as_py() == f"k{n - 1:06d}"
    assert {tuple(t) for t in table.column("tags").to_pylist()} == {("bulk", "metoo")}


def test_series_export_and_bad_targets(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    out = tmp_path / "s.csv"
    summary = export_series(engine, str(out), "csv", tags=["metoo", "notallmen"], since=T0,
                            until=T0 + DAY, step=timedelta(hours=6))
    assert summary.rows == 8
    rows = list(csv.DictReader(out.open().readlines()[1:]))
    assert (rows[0]["tag"], rows[0]["posts"], rows[0]["scored"]) == ("metoo", "2", "1")
    assert float(rows[0]["mean_compound"]) == pytest.approx(0.5)
    with pytest.raises(InputError, match="does not exist"):
        export_series(engine, str(tmp_path / "missing" / "s.csv"), "csv", tags=["metoo"],
                      since=T0, until=T0 + DAY, step=timedelta(hours=1))
    with pytest.raises(InputError, match="at least one tag"):
        export_series(engine, str(out), "csv", tags=[], since=T0, until=T0 + DAY,
                      step=timedelta(hours=1))
    with pytest.raises(InputError, match="parquet needs a file"):
        export_series(engine, "-", "parquet", tags=["metoo"], since=T0, until=T0 + DAY,
                      step=timedelta(hours=1))


def test_every_format_states_the_privacy_settings_it_was_made_under(
        engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    config = parse_config({"privacy": {"authors": "hash", "hash_secret": "k" * 32}}, env={})
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"p.{fmt}"
        export_posts(engine, config, str(out), fmt,  # type: ignore[arg-type]
                     tags=[], since=T0, until=T0 + DAY)
        if fmt == "csv":
            line = out.read_text(encoding="utf-8").splitlines()[0]
            assert line.startswith("# hashtag-monitor posts export made ")
            assert "store_text=False" in line and "authors=hash" in line
            assert "k" * 32 not in line
            continue
        if fmt == "jsonl":
            meta = json.loads((tmp_path / "p.jsonl.meta.json").read_text(encoding="utf-8"))
            # every line of the file itself is a data row
            assert all("post_id" in json.loads(x) for x in out.read_text().splitlines())
        else:
            meta = json.loads(pq.read_schema(out).metadata[b"hashtag_monitor"])
        assert meta["privacy"]["store_text"] is False and meta["privacy"]["authors"] == "hash"
        assert meta["authors_exported_as"] == "keyed pseudonyms (no handles)"
        assert len(meta["author_key_fingerprint"]) == 32 and "k" * 32 not in json.dumps(meta)
        assert "post_id" in meta["columns"]
