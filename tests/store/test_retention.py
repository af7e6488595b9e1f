"""Retention: text, authors and post rows go by age in small batches; the rollups
(and so every trend, relate figure and alert) stay exactly as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from monitor.models import ScoredPost, Sentiment, StreamKey
from monitor.store.kept import oldest_rows, recheck_candidates, retention_runs
from monitor.store.retention import RetentionAges, retention_batches, run_retention
from monitor.store.schema import post_tags, posts, tag_buckets, tag_pair_buckets
from monitor.store.write import write_batch
from tests.store.test_deletions import table

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
STREAM = StreamKey("bluesky-search", "bsky.example", "metoo")


def post(key: str, age: timedelta, tags: tuple[str, ...] = ("metoo", "ididit")) -> ScoredPost:
    return ScoredPost(
        platform="bluesky", key=key, created_at=NOW - age, url=None, author=f"hash-{key}",
        text=f"text {key}", lang="en", tags=tags, is_repost=False, sensitive=False,
        sentiment=Sentiment(0.4, 0.3, 0.6, 0.1),
    )


def stored(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    with engine.connect() as conn:
        return {r.key: (r.text, r.author)
                for r in conn.execute(select(posts.c.key, posts.c.text, posts.c.author))}


# ages in hours: 0.5 h … 100 h
AGES = [0.5, 5, 20, 30, 47, 49, 60, 71, 73, 100]


def fill(engine: Engine) -> None:
    write_batch(engine, [post(f"p{h}", timedelta(hours=h)) for h in AGES], stream=STREAM,
                now=NOW)


def test_retention_clears_text_authors_and_rows_and_leaves_trends(engine: Engine) -> None:
    fill(engine)
    rollups = table(engine, tag_buckets), table(engine, tag_pair_buckets)
    ages = RetentionAges(text=timedelta(days=1), authors=timedelta(days=2),
                         posts=timedelta(days=3))
    # limit=2: many small transactions, each batch a few rows
    batches = list(retention_batches(engine, ages, NOW, limit=2))
    assert len(batches) > 4 and all(changed <= 2 for _, changed in batches)
    got = stored(engine)
    assert set(got) == {f"p{h}" for h in AGES if h < 72}
    for h in AGES:
        if h >= 72:
            continue
        text, author = got[f"p{h}"]
        assert (text is None) == (h >= 24), h
        assert (author is None) == (h >= 48), h
    with engine.connect() as conn:
        orphans = conn.execute(select(func.count()).select_from(post_tags).where(
            post_tags.c.post_id.not_in(select(posts.c.id)))).scalar()
    assert orphans == 0
    # trends, relate and alerts read the rollups only: identical
    assert (table(engine, tag_buckets), table(engine, tag_pair_buckets)) == rollups

    runs = {r.kind: r for r in retention_runs(engine)}
    assert set(runs) == {"posts", "text", "authors"}
    assert runs["posts"].last_changed == 2 and runs["text"].last_changed == 5
    assert runs["authors"].last_changed == 3
    assert all(r.last_ok_at == NOW and r.last_error is None for r in runs.values())
    oldest = {r.kind: r.oldest for r in oldest_rows(engine)}
    assert oldest["posts"] == NOW - timedelta(hours=71)
    assert oldest["text"] == NOW - timedelta(hours=20)
    assert oldest["authors"] == NOW - timedelta(hours=47)
    assert oldest["buckets"] is not None and oldest["buckets"] < NOW - timedelta(hours=99)
    assert oldest["deletions"] is None


def test_a_second_run_reads_only_what_is_new_and_catches_late_old_posts(
        engine: Engine) -> None:
    fill(engine)
    ages = RetentionAges(authors=timedelta(days=2))
    assert run_retention(engine, ages, NOW) == {"authors": 5}
    # nothing new: nothing to do
    assert run_retention(engine, ages, NOW + timedelta(minutes=5)) == {"authors": 0}
    # an import brings a post older than where the job got to: the next run clears it
    write_batch(engine, [post("late", timedelta(days=20))], now=NOW)
    assert {r.kind: r.oldest for r in oldest_rows(engine)}["authors"] == \
        NOW - timedelta(days=20)
    later = NOW + timedelta(hours=2)
    assert run_retention(engine, ages, later) == {"authors": 2}  # "late" and p47 (now 49 h)
    assert stored(engine)["late"] == ("text late", None)
    assert {r.kind: r.oldest for r in oldest_rows(engine)}["authors"] == \
        NOW - timedelta(hours=30)


def test_forever_changes_nothing_and_recheck_slices(engine: Engine) -> None:
    fill(engine)
    before = stored(engine)
    assert run_retention(engine, RetentionAges(), NOW) == {}
    assert stored(engine) == before and retention_runs(engine) == []
    first = recheck_candidates(engine, "bluesky", NOW - timedelta(days=2), 0, 3)
    assert [k for _, k, _ in first] == ["p0.5", "p5", "p20"] or len(first) == 3
    rest = recheck_candidates(engine, "bluesky", NOW - timedelta(days=2), first[-1][0], 100)
    assert {k for _, k, _ in first + rest} == {f"p{h}" for h in AGES if h < 48}
    assert recheck_candidates(engine, "mastodon", NOW - timedelta(days=9), 0, 100) == []
