"""Reads of stored posts: recent posts, export chunks, which posts we hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.store.posts import existing_posts, post_chunks, recent_posts
from monitor.store.write import write_batch
from tests.store.test_queries import post

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def test_recent_posts_newest_first_and_only_quotable_ones_for_alerts(engine: Engine) -> None:
    base = post("a", T0, ("metoo",), 0.1)
    write_batch(engine, [
        replace(base, text="plain words"),
        replace(base, key="b", created_at=T0 + timedelta(minutes=1), text="a warning",
                sensitive=True),
        replace(base, key="c", created_at=T0 + timedelta(minutes=2), text="boosted",
                is_repost=True),
        replace(base, key="d", created_at=T0 + timedelta(minutes=3), text=None),
        replace(base, key="e", created_at=T0 + timedelta(minutes=4), text="newest words"),
        replace(base, key="f", created_at=T0 + timedelta(hours=2), text="later", tags=("other",)),
    ])
    assert [p.key for p in recent_posts(engine, "metoo", 10)] == ["e", "d", "c", "b", "a"]
    assert [p.key for p in recent_posts(engine, "metoo", 2)] == ["e", "d"]
    quotable = recent_posts(engine, "metoo", 10, since=T0, until=T0 + timedelta(hours=1),
                            quotable=True)
    # content warnings, reposts and posts without text are never quoted in an email
    assert [(p.key, p.text) for p in quotable] == [("e", "newest words"), ("a", "plain words")]
    assert recent_posts(engine, "metoo", 10, since=T0 + timedelta(minutes=5)) == []
    assert recent_posts(engine, "metoo", 0) == []


def test_post_chunks_carry_tags_and_filter_by_tag(engine: Engine) -> None:
    write_batch(engine, [
        post(f"p{i}", T0 + timedelta(minutes=i), ("metoo", "timesup") if i % 2 else ("other",),
             None)
        for i in range(7)
    ])
    chunks = list(post_chunks(engine, ["timesup"], T0, T0 + timedelta(hours=1), 2))
    assert [[p.key for p in c] for c in chunks] == [["p1", "p3"], ["p5"]]
    assert chunks[0][0].tags == ("metoo", "timesup")
    every = [p for c in post_chunks(engine, [], T0, T0 + timedelta(hours=1), 5) for p in c]
    assert [p.key for p in every] == [f"p{i}" for i in range(7)]


def test_existing_posts_finds_only_what_we_hold_beyond_one_lookup_chunk(engine: Engine) -> None:
    write_batch(engine, [post("held-1", T0, ("metoo",), None), post("held-2", T0, ("x",), None)])
    # a firehose reports hundreds of deletes per batch, nearly all of posts we never stored
    reported = [f"unknown-{i}" for i in range(1200)] + ["held-1", "held-2"]
    assert existing_posts(engine, {"test"}, reported) == {("test", "held-1"), ("test", "held-2")}
    assert existing_posts(engine, {"mastodon"}, reported) == set()
    assert existing_posts(engine, set(), reported) == set()
