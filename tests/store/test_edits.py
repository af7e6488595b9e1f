"""Edited posts (Mastodon ``status.update``): the stored post takes the new version and
the rollups stay exactly what the stored posts add up to, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from monitor.models import ScoredPost, Sentiment, StreamKey
from monitor.store.db import make_engine, migrate
from monitor.store.edits import apply_edits
from monitor.store.schema import post_tags, posts, tag_buckets, tag_pair_buckets
from monitor.store.write import write_batch

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
STREAM = StreamKey("mastodon", "mastodon.example", "metoo")


def post(key: str, minute: int, tags: tuple[str, ...], compound: float | None,
         text: str = "first version") -> ScoredPost:
    return ScoredPost(
        platform="mastodon", key=key, created_at=T0 + timedelta(minutes=minute), url=None,
        author=f"hash-of-{key}", text=text, lang="en", tags=tags, is_repost=False,
        sensitive=False,
        sentiment=None if compound is None else Sentiment(compound, 0.2, 0.7, 0.1),
    )


def rollup(engine: Engine, tbl: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    keys = list(tbl.primary_key.columns)
    with engine.connect() as conn:
        rows = conn.execute(select(tbl)).all()
    return {tuple(r._mapping[c.name] for c in keys):
            tuple(round(r._mapping[c.name], 6) if isinstance(r._mapping[c.name], float)
                  else r._mapping[c.name] for c in tbl.columns if c not in keys)
            for r in rows}


def test_an_edit_replaces_the_post_and_corrects_buckets_and_pairs(
    engine: Engine, tmp_path: Any
) -> None:
    one = post("k1", 1, ("metoo", "ididit"), 0.6)
    two = post("k2", 2, ("metoo",), -0.4)
    many = post("k3", 7, tuple(f"t{i:02d}" for i in range(12)), 0.1)  # past the pair cap
    write_batch(engine, [one, two, many], stream=STREAM, now=T0 + timedelta(hours=1))
    with engine.connect() as conn:
        collected = dict(conn.execute(select(posts.c.key, posts.c.collected_at)).all())

    edited = replace(one, text="second version", lang="fr", tags=("metoo", "notallmen"),
                     sentiment=Sentiment(-0.7, 0.0, 0.3, 0.7), sensitive=True)
    reordered = replace(many, tags=tuple(reversed(many.tags)), sentiment=None)
    unseen = post("k9", 3, ("metoo",), 0.0)
    result = apply_edits(engine, [edited, reordered, unseen], now=T0 + timedelta(hours=2))
    assert result.updated == 2
    assert result.missing == (unseen,)

    with engine.connect() as conn:
        row = conn.execute(select(posts).where(posts.c.key == "k1")).one()
        tags = set(conn.execute(select(post_tags.c.tag).join(posts)
                                .where(posts.c.key == "k1")).scalars())
        keys = set(conn.execute(select(posts.c.key)).scalars())
        after = dict(conn.execute(select(posts.c.key, posts.c.collected_at)).all())
    assert (row.text, row.lang, row.sensitive) == ("second version", "fr", True)
    assert row.compound == -0.7 and row.created_at == one.created_at
    assert tags == {"metoo", "notallmen"}
    assert keys == {"k1", "k2", "k3"}  # the unseen post was not inserted here
    assert after == collected  # collected_at is kept

    # the rollups equal those of a database that only ever saw the new versions
    fresh = make_engine(f"sqlite:///{tmp_path}/fresh.db")
    migrate(fresh)
    write_batch(fresh, [edited, two, reordered], stream=STREAM, now=T0)
    try:
        assert rollup(engine, tag_buckets) == rollup(fresh, tag_buckets)
        assert rollup(engine, tag_pair_buckets) == rollup(fresh, tag_pair_buckets)
        # the tag that left k1 no longer counts; its bucket row is gone
        assert not any(k[0] == "ididit" for k in rollup(engine, tag_buckets))
    finally:
        fresh.dispose()


def test_an_edit_with_the_same_content_changes_nothing(engine: Engine) -> None:
    one = post("k1", 1, ("metoo", "ididit"), 0.6)
    write_batch(engine, [one], stream=STREAM, now=T0)
    before = (rollup(engine, tag_buckets), rollup(engine, tag_pair_buckets))
    assert apply_edits(engine, [one, one]).updated == 1
    assert (rollup(engine, tag_buckets), rollup(engine, tag_pair_buckets)) == before
    assert apply_edits(engine, []).updated == 0
