"""write_batch: one transaction, only real inserts counted, buckets exact, cursor saved."""

from __future__ import annotations

import pickle
import random
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from monitor.errors import StoreError
from monitor.models import Cursor, ScoredPost, Sentiment, StreamKey
from monitor.store.buckets import bucket_start
from monitor.store.pairs import pair_increments
from monitor.store.schema import post_tags, posts, stream_health, tag_buckets, tag_pair_buckets
from monitor.store.write import (
    WriteResult,
    import_connection,
    load_cursor,
    prepare_batch,
    record_failure,
    write_batch,
    write_prepared,
)
from tests.store import core_writer

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
STREAM = StreamKey("mastodon", "mastodon.example", "metoo")


def scored(key: str, minute: int, tags: tuple[str, ...], compound: float | None) -> ScoredPost:
    sentiment = None if compound is None else Sentiment(compound, 0.2, 0.7, 0.1)
    return ScoredPost(
        platform="mastodon",
        key=key,
        created_at=T0 + timedelta(minutes=minute),
        url=None,
        author=None,
        text=None,
        lang="en",
        tags=tags,
        is_repost=False,
        sensitive=False,
        sentiment=sentiment,
    )


def buckets(engine: Engine) -> dict[tuple[str, datetime], tuple[int, int, float, int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(tag_buckets)).all()
    return {
        (r.tag, r.bucket_start): (
            r.posts,
            r.scored,
            round(r.compound_sum, 6),
            r.positive,
            r.neutral,
            r.negative,
        )
        for r in rows
    }


def test_batch_counts_posts_tags_and_buckets(engine: Engine) -> None:
    batch = [
        scored("a", 1, ("metoo", "notallmen"), 0.5),
        scored("b", 2, ("metoo",), -0.6),
        scored("c", 7, ("metoo",), 0.0),
        scored("d", 8, ("metoo",), None),  # not scored: counted in posts only
    ]
    result = write_batch(
        engine, batch, cursor=Cursor("mastodon", STREAM.name, "110"), stream=STREAM, rejected=2
    )
    assert (result.inserted, result.duplicates, result.tag_rows) == (4, 0, 5)
    got = buckets(engine)
    assert got[("metoo", T0)] == (2, 2, -0.1, 1, 0, 1)
    assert got[("metoo", T0 + timedelta(minutes=5))] == (2, 1, 0.0, 0, 1, 0)
    assert got[("notallmen", T0)] == (1, 1, 0.5, 1, 0, 0)
    assert load_cursor(engine, "mastodon", STREAM.name) == Cursor("mastodon", STREAM.name, "110")
    with engine.connect() as conn:
        health = conn.execute(select(stream_health)).one()
    assert (health.posts_collected, health.posts_rejected) == (4, 2)
    assert health.last_post_at == T0 + timedelta(minutes=8)


def test_duplicates_change_nothing(engine: Engine) -> None:
    first = [scored("a", 1, ("metoo",), 0.5), scored("b", 2, ("metoo",), 0.5)]
    write_batch(engine, first)
    before = buckets(engine)
    again = [
        scored("a", 1, ("metoo",), 0.5),
        scored("b", 2, ("metoo",), 0.5),
        scored("b", 2, ("metoo",), 0.5),
    ]
    result = write_batch(engine, again, cursor=Cursor("mastodon", STREAM.name, "200"))
    assert (result.inserted, result.duplicates) == (0, 3)
    assert buckets(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(post_tags)).scalar_one() == 2
    # the cursor still moves: a page of repeats is progress too
    assert load_cursor(engine, "mastodon", STREAM.name).value == "200"  # type: ignore[union-attr]


def test_failed_batch_leaves_no_trace(engine: Engine) -> None:
    """A failure at the last step (the cursor) rolls back posts, tags and buckets too."""
    broken_cursor = Cursor("mastodon", STREAM.name, None)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        write_batch(engine, [scored("ok", 1, ("metoo",), 0.5)], cursor=broken_cursor)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(post_tags)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(tag_buckets)).scalar_one() == 0
    assert load_cursor(engine, "mastodon", STREAM.name) is None
    # and the same batch goes in whole afterwards
    assert write_batch(engine, [scored("ok", 1, ("metoo",), 0.5)]).inserted == 1


def test_timestamps_come_back_aware_utc(engine: Engine) -> None:
    write_batch(engine, [scored("a", 3, ("metoo",), 0.1)])
    with engine.connect() as conn:
        created = conn.execute(select(posts.c.created_at)).scalar_one()
    assert created == T0 + timedelta(minutes=3)
    assert created.utcoffset() == timedelta(0)


def test_failure_is_recorded_in_health(engine: Engine) -> None:
    record_failure(engine, STREAM, "mastodon.example: HTTP 503; retrying next tick")
    record_failure(engine, STREAM, "mastodon.example: HTTP 503; retrying next tick")
    with engine.connect() as conn:
        health = conn.execute(select(stream_health)).one()
    assert health.fetch_errors == 2
    assert health.last_success_at is None
    assert "503" in health.last_error


def test_bucket_start_floors_to_five_minutes() -> None:
    assert bucket_start(datetime(2024, 1, 1, 10, 14, 59, tzinfo=UTC)) == datetime(
        2024, 1, 1, 10, 10, tzinfo=UTC
    )


# ------------------------------------------------------------------ fast paths
#
# write_batch talks to sqlite3 and psycopg directly. These tests pin what that
# must keep: the same stored values as SQLAlchemy binds, exact counts under
# concurrency, and bucket sums equal to a plain recount.


def reference_buckets(
    batch: list[ScoredPost],
) -> dict[tuple[str, datetime], tuple[int, int, float, int, int, int]]:
    """The buckets recounted the obvious way (first copy of each key wins)."""
    seen: dict[tuple[str, str], ScoredPost] = {}
    for post in batch:
        seen.setdefault((post.platform, post.key), post)
    out: dict[tuple[str, datetime], list[float]] = {}
    for post in seen.values():
        for tag in post.tags:
            row = out.setdefault((tag, bucket_start(post.created_at)), [0, 0, 0.0, 0, 0, 0])
            row[0] += 1
            if post.sentiment is not None:
                c = post.sentiment.compound
                row[1] += 1
                row[2] += c
                row[3 if c >= 0.05 else 5 if c <= -0.05 else 4] += 1
    return {
        k: (int(v[0]), int(v[1]), round(v[2], 6), int(v[3]), int(v[4]), int(v[5]))
        for k, v in out.items()
    }


def many(prefix: str, n: int, seed: int) -> list[ScoredPost]:
    rnd = random.Random(seed)
    tags = ("metoo", "notallmen", "howiwillchange", "ididit", "timesup")
    out = []
    for i in range(n):
        compound = rnd.choice([None, 0, 0.0, 0.05, -0.05, rnd.uniform(-1, 1)])
        chosen = tuple(rnd.sample(tags, rnd.randint(0, 3)))
        out.append(scored(f"{prefix}{i}", rnd.randrange(60), chosen, compound))
    return out


def test_large_batch_with_repeats_matches_a_recount(engine: Engine) -> None:
    earlier = many("k", 300, seed=1)
    write_batch(engine, earlier)
    batch = many("k", 1200, seed=1) + many("k", 50, seed=1)  # 300 stored, 50 repeated in batch
    result = write_batch(engine, batch, stream=STREAM)
    assert (result.inserted, result.duplicates) == (900, 350)
    assert result.tag_rows == sum(len(p.tags) for p in batch[300:1200])
    assert buckets(engine) == reference_buckets(batch)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar_one() == 1200
        tag_count = conn.execute(select(func.count()).select_from(post_tags)).scalar_one()
        collected = conn.execute(select(stream_health.c.posts_collected)).scalar_one()
    assert tag_count == sum(len(p.tags) for p in batch[:1200])
    assert collected == 900


def test_stored_values_compare_equal_to_sqlalchemy_binds(engine: Engine) -> None:
    """Raw writes must store what SQLAlchemy would: queries filter on these columns."""
    odd = datetime(2024, 3, 1, 14, 7, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2024, 3, 1, 12, 9, 59)  # taken as UTC
    post = ScoredPost(
        platform="bluesky", key="at://x/1", created_at=odd, url="https://bsky.app/x/1",
        author="h:abc", text="Balance ton porc 🙏", lang="fr", tags=("balancetonporc",),
        is_repost=True, sensitive=True, sentiment=Sentiment(0, 0, 1, 0),
    )
    other = replace(scored("b", 0, ("balancetonporc",), None), created_at=naive)
    now = datetime(2024, 3, 2, 8, 0, tzinfo=UTC)
    write_batch(engine, [post, other], now=now)
    instant = odd.astimezone(UTC)
    with engine.connect() as conn:
        row = conn.execute(select(posts).where(posts.c.created_at == instant)).one()
        assert row.key == "at://x/1" and row.is_repost is True and row.sensitive is True
        assert (row.compound, row.pos, row.neu, row.neg) == (0.0, 0.0, 1.0, 0.0)
        assert row.created_at == instant and row.created_at.utcoffset() == timedelta(0)
        assert row.collected_at == now
        assert row.text == "Balance ton porc 🙏"
        assert conn.execute(
            select(posts.c.key).where(posts.c.created_at == naive.replace(tzinfo=UTC))
        ).scalar_one() == "b"
        tagged = conn.execute(
            select(post_tags.c.created_at).where(post_tags.c.created_at == instant)
        ).scalar_one()
        assert tagged == instant
        rows = conn.execute(
            select(tag_buckets.c.bucket_start, tag_buckets.c.posts, tag_buckets.c.neutral)
            .where(tag_buckets.c.bucket_start >= datetime(2024, 3, 1, 12, 5, tzinfo=UTC))
            .order_by(tag_buckets.c.bucket_start)
        ).all()
    # 14:07:05+02:00 and 12:09:59 share the 12:05 UTC bucket
    assert [tuple(r) for r in rows] == [(datetime(2024, 3, 1, 12, 5, tzinfo=UTC), 2, 1)]


def test_driver_and_sqlalchemy_writes_share_rows(engine: Engine) -> None:
    """SQLAlchemy Core statements (tests/store/core_writer.py) and the executors add
    to the same bucket rows: if their stored formats differed, the sums would split."""
    first, second = many("p", 200, seed=7), many("q", 200, seed=8)
    write_batch(engine, first)
    with engine.begin() as conn:
        inserted, tag_rows = core_writer.write_posts(conn, second, datetime.now(UTC))
    assert inserted == 200 and tag_rows == sum(len(p.tags) for p in second)
    assert buckets(engine) == reference_buckets(first + second)
    again = write_batch(engine, first + second)
    assert (again.inserted, again.duplicates) == (0, 400)


def test_two_writers_at_once_count_exactly(engine: Engine) -> None:
    """Two streams write overlapping batches at the same moment (same bucket rows,
    shared keys in opposite orders): every post lands once and the sums are exact."""
    shared = many("s", 150, seed=3)
    a = many("a", 250, seed=4) + shared
    b = list(reversed(shared)) + many("b", 250, seed=5)
    barrier = threading.Barrier(2)
    results: dict[str, WriteResult] = {}
    errors: list[BaseException] = []

    def run(name: str, batch: list[ScoredPost]) -> None:
        try:
            barrier.wait(timeout=10)
            results[name] = write_batch(
                engine, batch, stream=StreamKey("mastodon", name, "metoo"),
                cursor=Cursor("mastodon", name, "1"),
            )
        except BaseException as exc:  # surfaced below with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, x)) for n, x in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert results["a"].inserted + results["b"].inserted == 650
    assert results["a"].duplicates + results["b"].duplicates == 150
    assert buckets(engine) == reference_buckets(a + b)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar_one() == 650
        tags = conn.execute(select(func.count()).select_from(post_tags)).scalar_one()
        health = dict(conn.execute(
            select(stream_health.c.stream, stream_health.c.posts_collected)).all())
    assert tags == sum(len(p.tags) for p in a + b[150:])
    assert health == {"a#metoo": results["a"].inserted, "b#metoo": results["b"].inserted}


def test_batch_without_tags_or_sentiment_is_stored(engine: Engine) -> None:
    """Posts with no tags and no scores (all-NULL columns, empty tag lists) still count."""
    batch = [scored("x1", 1, (), None), scored("x2", 2, (), None)]
    result = write_batch(engine, batch, stream=STREAM)
    assert (result.inserted, result.duplicates, result.tag_rows) == (2, 0, 0)
    assert buckets(engine) == {}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar_one() == 2
        assert conn.execute(select(stream_health.c.posts_collected)).scalar_one() == 2


def test_control_characters_in_text_survive(engine: Engine) -> None:
    """Text with the ASCII separators the PostgreSQL path packs columns with comes
    back intact (that batch falls back to plain arrays), and so do empty strings."""
    odd = replace(scored("sep\x1fkey", 1, ("metoo",), 0.5), text="a\x1fb\x1ec", author="")
    plain = replace(scored("plain", 2, ("metoo",), 0.5), text="\x1e", author=None)
    assert write_batch(engine, [odd, plain]).inserted == 2
    alone = replace(scored("alone", 3, ("metoo",), None), text="", author="")
    assert write_batch(engine, [alone]).inserted == 1
    pair = [replace(scored("e1", 3, (), None), text="", author=""),
            replace(scored("e2", 3, (), None), text="x", author=None)]
    assert write_batch(engine, pair).inserted == 2
    with engine.connect() as conn:
        got = dict(conn.execute(select(posts.c.key, posts.c.text)).all())
        authors = dict(conn.execute(select(posts.c.key, posts.c.author)).all())
    assert got == {"sep\x1fkey": "a\x1fb\x1ec", "plain": "\x1e", "alone": "", "e1": "",
                   "e2": "x"}
    assert authors == {"sep\x1fkey": "", "plain": None, "alone": "", "e1": "", "e2": None}
    assert buckets(engine)[("metoo", T0)] == (3, 2, 1.0, 2, 0, 0)


def test_first_copy_of_a_repeated_post_is_the_one_stored(engine: Engine) -> None:
    """A batch holding two versions of one post (a page fetched twice, edited in
    between) stores the first and counts the second as a duplicate."""
    first = scored("dup", 1, ("metoo",), 0.5)
    edited = replace(first, tags=("metoo", "timesup"), sentiment=Sentiment(-0.7, 0, 0.3, 0.7))
    result = write_batch(engine, [first, edited, scored("other", 2, ("metoo",), None)])
    assert (result.inserted, result.duplicates, result.tag_rows) == (2, 1, 2)
    with engine.connect() as conn:
        assert conn.execute(select(posts.c.compound).where(posts.c.key == "dup")).scalar_one() \
            == 0.5
    assert buckets(engine) == {("metoo", T0): (2, 1, 0.5, 1, 0, 0)}


def pair_rows(engine: Engine) -> dict[tuple[str, str, datetime], tuple[int, int, float]]:
    with engine.connect() as conn:
        return {(r.tag_a, r.tag_b, r.bucket_start.astimezone(UTC)):
                (r.posts, r.scored, round(r.compound_sum, 6))
                for r in conn.execute(select(tag_pair_buckets))}


def test_rows_prepared_elsewhere_store_what_write_batch_stores(engine: Engine) -> None:
    """An import's path: rows made (and pickled) in a worker, then only executed."""
    earlier = many("k", 200, seed=3)
    write_batch(engine, earlier)
    stuffed = scored("stuffed", 7, tuple(f"t{i:02d}" for i in range(14)), 0.4)
    batch = many("k", 600, seed=3) + many("k", 30, seed=3) + [stuffed]
    prepared = pickle.loads(pickle.dumps(prepare_batch(batch, engine.dialect.name)))
    with import_connection(engine) as conn:
        result = write_prepared(conn, prepared, cursor=Cursor("file", "f", "600"))
        again = write_prepared(conn, prepared, cursor=Cursor("file", "f", "600"))
    assert (result.inserted, result.duplicates) == (401, 230)
    assert (again.inserted, again.duplicates) == (0, 631)
    assert result.tag_rows == sum(len(p.tags) for p in batch[200:600]) + 14
    assert buckets(engine) == reference_buckets(batch)
    seen = {(p.platform, p.key): p for p in reversed(batch)}  # the first copy wins
    want = {(r["tag_a"], r["tag_b"], r["bucket_start"]):
            (r["posts"], r["scored"], round(r["compound_sum"], 6))
            for r in pair_increments(seen.values())}
    assert pair_rows(engine) == want
    assert load_cursor(engine, "file", "f") == Cursor("file", "f", "600")


def test_rows_prepared_for_another_database_are_refused(engine: Engine) -> None:
    other = "postgresql" if engine.dialect.name == "sqlite" else "sqlite"
    prepared = prepare_batch([scored("a", 1, ("metoo",), 0.5)], other)
    with pytest.raises(StoreError, match="prepared for"):
        write_prepared(engine, prepared)
