"""File import end to end: file → enrich → store; resumable; numbers checked independently."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor.config import Config, DatabaseSettings
from monitor.enrich.pipeline import Enricher
from monitor.importer import import_file
from monitor.store.schema import posts, tag_buckets

SAMPLE = Path(__file__).resolve().parent / "data" / "sample_metoo.jsonl"


def expected_daily(tag: str) -> dict[str, tuple[int, float]]:
    """Per UTC day: posts carrying *tag* and their mean VADER compound, straight from the file."""
    vader = SentimentIntensityAnalyzer()
    acc: dict[str, list[float]] = defaultdict(list)
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            created = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
        except (json.JSONDecodeError, ValueError):
            continue
        if tag in [t.lower() for t in row["tags"]]:
            acc[created.date().isoformat()].append(vader.polarity_scores(row["text"])["compound"])
    return {day: (len(v), sum(v) / len(v)) for day, v in acc.items()}


def daily_from_buckets(engine: Engine, tag: str) -> dict[str, tuple[int, float]]:
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    with engine.connect() as conn:
        for row in conn.execute(select(tag_buckets).where(tag_buckets.c.tag == tag)):
            day = out[row.bucket_start.date().isoformat()]
            day[0] += row.posts
            day[1] += row.scored
            day[2] += row.compound_sum
    return {d: (int(v[0]), v[2] / v[1]) for d, v in out.items()}


def test_import_counts_and_sentiment_match_the_file(engine: Engine, tmp_path: Path) -> None:
    config = Config(database=DatabaseSettings(url=str(engine.url)))
    enricher = Enricher.from_config(config, secret_dir=tmp_path)
    rejected: list[str] = []
    summary = import_file(
        engine,
        config,
        SAMPLE,
        "twitter",
        enricher=enricher,
        batch_size=50,
        on_reject=lambda r: rejected.append(str(r)),
    )
    assert (summary.stored, summary.duplicates, summary.rejected) == (240, 0, 2)
    assert rejected[0].startswith(f"{SAMPLE}:241: created_at:")
    assert rejected[1].startswith(f"{SAMPLE}:242: invalid JSON")
    for tag in ("metoo", "notallmen", "howiwillchange"):
        want = expected_daily(tag)
        got = daily_from_buckets(engine, tag)
        assert got.keys() == want.keys()
        for day in want:
            assert got[day][0] == want[day][0]
            assert abs(got[day][1] - want[day][1]) < 1e-9


def test_import_twice_adds_nothing_and_keeps_privacy(engine: Engine, tmp_path: Path) -> None:
    config = Config(database=DatabaseSettings(url=str(engine.url)))
    enricher = Enricher.from_config(config, secret_dir=tmp_path)
    import_file(engine, config, SAMPLE, "twitter", enricher=enricher)
    again = import_file(engine, config, SAMPLE, "twitter", enricher=enricher)
    assert again.stored == 0
    assert again.skipped_lines == 240  # resumed after the last stored line
    # a copy of the file under another name: nothing new either, all duplicates
    copy = tmp_path / "copy.jsonl"
    copy.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    third = import_file(engine, config, copy, "twitter", enricher=enricher)
    assert (third.stored, third.duplicates) == (0, 240)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar_one() == 240
        # default privacy: no text, authors hashed (never the handle itself)
        texts = conn.execute(select(posts.c.text).where(posts.c.text.is_not(None))).all()
        assert texts == []
        authors = {a for (a,) in conn.execute(select(posts.c.author))}
        assert authors and not any(a.startswith("user") for a in authors)


def test_resume_after_interruption(engine: Engine, tmp_path: Path) -> None:
    config = Config(database=DatabaseSettings(url=str(engine.url)))
    enricher = Enricher.from_config(config, secret_dir=tmp_path)
    partial = tmp_path / "partial.jsonl"
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    partial.write_text("".join(lines[:100]), encoding="utf-8")
    first = import_file(engine, config, partial, "twitter", enricher=enricher)
    assert first.stored == 100
    partial.write_text("".join(lines), encoding="utf-8")  # the rest arrives
    second = import_file(engine, config, partial, "twitter", enricher=enricher)
    assert second.stored + second.duplicates == 140
    assert second.stored == 140
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(posts.c.created_at))).scalar_one()
    assert newest.tzinfo is not None and newest < datetime(2017, 10, 26, tzinfo=UTC)


def test_the_last_chunks_are_smaller() -> None:
    """The first chunk and the last are written while workers idle: a quarter each."""
    from monitor.importer import _chunks

    records = [(n, "x" * 99 + "\n") for n in range(1, 1001)]  # 100 characters each
    sizes = [len(chunk) for chunk, _ in _chunks(records, 100, left=100 * 1000)]
    # the first a quarter; below two full chunks left (from 82,500 characters on), too
    assert sizes == [25] + [100] * 8 + [25] * 7
    # unknown size: all full
    assert {len(chunk) for chunk, _ in _chunks(records, 100)} == {100}
