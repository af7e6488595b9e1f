"""Deletions in the one write path: the post row, its tags, text and author go in
the transaction that records the deletion; a deletion that comes first wins;
``keep`` leaves the rollups, ``recount`` subtracts exactly what the post added."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from monitor.models import ScoredPost, Sentiment, StreamKey
from monitor.store.buckets import NEGATIVE_AT, POSITIVE_AT, bucket_start
from monitor.store.pairs import pair_increments
from monitor.store.schema import deletions, post_tags, posts, tag_buckets, tag_pair_buckets
from monitor.store.write import write_batch

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
STREAM = StreamKey("mastodon", "mastodon.example", "metoo")


def post(key: str, minute: int, tags: tuple[str, ...], compound: float | None,
         platform: str = "mastodon") -> ScoredPost:
    return ScoredPost(
        platform=platform, key=key, created_at=T0 + timedelta(minutes=minute), url=None,
        author=f"hash-of-{key}", text=f"text of {key}", lang="en", tags=tags,
        is_repost=False, sensitive=False,
        sentiment=None if compound is None else Sentiment(compound, 0.2, 0.7, 0.1),
    )


def table(engine: Engine, tbl: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """A rollup as {key: values} (floats rounded), rows with posts > 0 only."""
    keys = [c for c in tbl.primary_key.columns]
    with engine.connect() as conn:
        rows = conn.execute(select(tbl)).all()
    out = {}
    for row in rows:
        m = row._mapping
        key = tuple(m[c.name] for c in keys)
        out[key] = tuple(round(m[c.name], 6) if isinstance(m[c.name], float) else m[c.name]
                         for c in tbl.columns if c not in keys)
    return out


def expected_buckets(kept: list[ScoredPost]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    acc: dict[tuple[str, datetime], list[Any]] = {}
    for p in kept:
        c = p.sentiment.compound if p.sentiment else None
        for tag in p.tags:
            row = acc.setdefault((tag, bucket_start(p.created_at)), [0, 0, 0.0, 0.0, 0, 0, 0])
            row[0] += 1
            if c is not None:
                row[1] += 1
                row[2] += c
                row[3] += c * c
                row[4] += c >= POSITIVE_AT
                row[5] += NEGATIVE_AT < c < POSITIVE_AT
                row[6] += c <= NEGATIVE_AT
    return {k: tuple(round(v, 6) if isinstance(v, float) else v for v in row)
            for k, row in acc.items()}


def expected_pairs(kept: list[ScoredPost]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {(r["tag_a"], r["tag_b"], r["bucket_start"]):
            (r["posts"], r["scored"], round(r["compound_sum"], 6))
            for r in pair_increments(kept)}


def count(engine: Engine, tbl: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tbl)).scalar_one())


TWELVE = tuple(f"t{i:02d}" for i in (11, 3, 7, 1, 9, 0, 5, 2, 8, 4, 10, 6))  # > MAX_PAIR_TAGS
BATCH = [
    post("a", 1, ("metoo", "notallmen"), 0.5),
    post("b", 2, ("metoo",), -0.6),
    post("c", 3, ("metoo", "notallmen", "ididit"), None),
    post("d", 7, TWELVE, 0.02),
    post("e", 8, ("metoo", "t03"), 0.7),
]


def test_delete_after_post_removes_row_tags_text_and_author_keeps_rollups(
        engine: Engine) -> None:
    write_batch(engine, BATCH, stream=STREAM)
    buckets_before = table(engine, tag_buckets)
    pairs_before = table(engine, tag_pair_buckets)
    later = T0 + timedelta(hours=1)
    result = write_batch(engine, [], stream=STREAM, deleted=[("mastodon", "a")], now=later)
    assert result.removed == 1
    with engine.connect() as conn:
        keys = set(conn.execute(select(posts.c.key)).scalars())
        gone = conn.execute(select(deletions)).one()
        tagged = conn.execute(select(func.count()).select_from(post_tags)
                              .where(post_tags.c.post_id.not_in(select(posts.c.id)))).scalar()
        texts = set(conn.execute(select(posts.c.text)).scalars())
        authors = set(conn.execute(select(posts.c.author)).scalars())
    assert keys == {"b", "c", "d", "e"}
    assert tagged == 0 and count(engine, post_tags) == 1 + 3 + 12 + 2
    assert "text of a" not in texts and "hash-of-a" not in authors
    # the deletions row: platform, key and times only
    assert set(gone._mapping) == {"platform", "key", "seen_at", "applied_at"}
    assert (gone.platform, gone.key, gone.seen_at, gone.applied_at) == (
        "mastodon", "a", later, later)
    # keep (the default): what was seen then is still counted
    assert table(engine, tag_buckets) == buckets_before
    assert table(engine, tag_pair_buckets) == pairs_before


def test_recount_subtracts_exactly_what_the_post_added(engine: Engine) -> None:
    write_batch(engine, BATCH, stream=STREAM)
    # "d" has 12 tags: the pair rule paired its first 10 in its own order
    write_batch(engine, [], stream=STREAM, deleted=[("mastodon", "a"), ("mastodon", "d")],
                recount=True)
    kept = [p for p in BATCH if p.key not in ("a", "d")]
    assert table(engine, tag_buckets) == expected_buckets(kept)
    assert table(engine, tag_pair_buckets) == expected_pairs(kept)
    # rows nobody counts any more are gone, not left at zero
    assert ("t11", bucket_start(T0 + timedelta(minutes=7))) not in table(engine, tag_buckets)
    write_batch(engine, [], stream=STREAM, deleted=[("mastodon", k) for k in "bce"],
                recount=True)
    assert count(engine, tag_buckets) == 0 and count(engine, tag_pair_buckets) == 0
    assert count(engine, posts) == 0 and count(engine, post_tags) == 0


def test_deletion_before_its_post_wins(engine: Engine) -> None:
    result = write_batch(engine, [], stream=STREAM, deleted=[("mastodon", "a")])
    assert result.removed == 0
    with engine.connect() as conn:
        tomb = conn.execute(select(deletions)).one()
    assert tomb.applied_at is None  # nothing was held to remove
    # the post shows up later (a replay, a federation delay): not stored, not counted
    result = write_batch(engine, BATCH, stream=STREAM)
    assert (result.inserted, result.duplicates) == (4, 1)
    with engine.connect() as conn:
        keys = set(conn.execute(select(posts.c.key)).scalars())
    assert keys == {"b", "c", "d", "e"}
    assert table(engine, tag_buckets) == expected_buckets(BATCH[1:])
    assert table(engine, tag_pair_buckets) == expected_pairs(BATCH[1:])


def test_deletion_in_the_same_batch_and_replays_win(engine: Engine) -> None:
    # post and its delete in one batch, in either order: not stored
    result = write_batch(engine, BATCH, stream=STREAM, deleted=[("mastodon", "b")])
    assert result.inserted == 4
    # a replay of the whole stream later: neither "b" nor a deleted "c" comes back
    write_batch(engine, [], stream=STREAM, deleted=[("mastodon", "c")])
    result = write_batch(engine, BATCH, stream=STREAM)
    assert result.inserted == 0
    with engine.connect() as conn:
        keys = set(conn.execute(select(posts.c.key)).scalars())
    assert keys == {"a", "d", "e"}
    # the same key on another platform is another post
    result = write_batch(engine, [post("b", 2, ("metoo",), 0.1, platform="bluesky")])
    assert result.inserted == 1
    assert Counter(pl for pl, _ in table(engine, deletions)) == Counter({"mastodon": 2})


def test_many_deletions_in_chunks(engine: Engine) -> None:
    many = [post(f"k{i:04d}", i % 50, ("metoo", "ididit"), 0.3) for i in range(1200)]
    for start in range(0, len(many), 500):
        write_batch(engine, many[start:start + 500], stream=STREAM)
    gone = [("mastodon", p.key) for p in many[::2]] + [("mastodon", f"x{i}") for i in range(300)]
    result = write_batch(engine, [], stream=STREAM, deleted=gone, recount=True)
    assert result.removed == 600
    assert count(engine, posts) == 600 and count(engine, deletions) == 900
    assert table(engine, tag_buckets) == expected_buckets(many[1::2])
    assert table(engine, tag_pair_buckets) == expected_pairs(many[1::2])
