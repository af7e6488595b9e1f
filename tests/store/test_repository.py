"""write_batch: one transaction, only real inserts counted, buckets exact, cursor saved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from monitor.models import Cursor, ScoredPost, Sentiment, StreamKey
from monitor.store.repository import bucket_start, load_cursor, record_failure, write_batch
from monitor.store.schema import post_tags, posts, stream_health, tag_buckets

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
