"""The tag-pair rollup: every unordered pair once, tag-stuffed posts capped, upserts that
add up, and the migration backfill building the same rows as the write path."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, select

from monitor.models import ScoredPost, Sentiment
from monitor.store.db import MIGRATIONS_DIR, migrate
from monitor.store.pairs import MAX_PAIR_TAGS, PairRow, pair_increments
from monitor.store.schema import tag_pair_buckets
from monitor.store.write import write_batch
from tests.store import core_writer

T0 = datetime(2025, 2, 3, 10, 0, tzinfo=UTC)

Key = tuple[str, str, datetime]


def post(key: str, minute: float, tags: tuple[str, ...], compound: float | None) -> ScoredPost:
    return ScoredPost(
        platform="mastodon", key=key, created_at=T0 + timedelta(minutes=minute), url=None,
        author=None, text=None, lang="en", tags=tags, is_repost=False, sensitive=False,
        sentiment=None if compound is None else Sentiment(compound, 0.2, 0.7, 0.1),
    )


def as_table(rows: list[PairRow]) -> dict[Key, tuple[int, int, float]]:
    return {(r["tag_a"], r["tag_b"], r["bucket_start"]): (r["posts"], r["scored"],
                                                          r["compound_sum"])
            for r in rows}


def stored(engine: Engine) -> dict[Key, tuple[int, int, float]]:
    with engine.connect() as conn:
        rows = conn.execute(select(tag_pair_buckets)).all()
    return {(r.tag_a, r.tag_b, r.bucket_start): (r.posts, r.scored, r.compound_sum)
            for r in rows}


def many(prefix: str, n: int, seed: int) -> list[ScoredPost]:
    rnd = random.Random(seed)
    tags = ["metoo", "notallmen", "howiwillchange", "ididit", "timesup", "ünïcode"]
    out = []
    for i in range(n):
        compound = rnd.choice([None, 0.0, 0.5, -0.3, rnd.uniform(-1, 1)])
        out.append(post(f"{prefix}{i}", rnd.uniform(0, 90),
                        tuple(rnd.sample(tags, rnd.randint(0, 4))), compound))
    return out


def test_every_unordered_pair_once_per_bucket() -> None:
    rows = pair_increments([
        post("1", 1, ("metoo", "ididit", "notallmen"), 0.5),
        post("2", 3, ("notallmen", "metoo"), None),
        post("3", 4, ("metoo",), 0.9),  # one tag: no pair
        post("4", 6, ("ididit", "metoo"), -0.25),  # next 5-minute bucket
    ])
    b0, b1 = T0, T0 + timedelta(minutes=5)
    assert as_table(rows) == {
        ("ididit", "metoo", b0): (1, 1, 0.5),
        ("ididit", "notallmen", b0): (1, 1, 0.5),
        ("metoo", "notallmen", b0): (2, 1, 0.5),
        ("ididit", "metoo", b1): (1, 1, -0.25),
    }
    keys = [(r["tag_a"], r["tag_b"], r["bucket_start"]) for r in rows]
    assert keys == sorted(keys)  # the order concurrent writers lock rows in
    assert all(r["tag_a"] < r["tag_b"] for r in rows)


def test_tag_stuffed_posts_pair_only_their_first_tags() -> None:
    stuffed = tuple(f"t{i:02d}" for i in range(30, 0, -1))  # t30, t29, ... t01
    rows = pair_increments([post("spam", 0, stuffed, 0.1)])
    assert len(rows) == MAX_PAIR_TAGS * (MAX_PAIR_TAGS - 1) // 2
    paired = {r["tag_a"] for r in rows} | {r["tag_b"] for r in rows}
    # the post's own first ten tags, not the alphabetically first ten
    assert paired == set(stuffed[:MAX_PAIR_TAGS])


@pytest.mark.parametrize("stuffed", [False, True], ids=["pairs-in-sql", "pairs-bound"])
def test_upserts_add_to_existing_rows_and_paths_agree(engine: Engine, stuffed: bool) -> None:
    """write_batch (raw driver) and SQLAlchemy binds must hit the same rows: a different
    stored timestamp format would split the sums. A tag-stuffed post makes the SQLite
    executor bind the pair rows from Python instead of reading them in SQL."""
    batch = many("x", 200, seed=1)
    if stuffed:
        batch.append(post("spam", 12, tuple(f"s{i:02d}" for i in range(14)), 0.4))
    rows = pair_increments(batch)
    write_batch(engine, batch)
    with engine.begin() as conn:
        core_writer.add_pairs(conn, rows)
    doubled = {k: (2 * n, 2 * s, 2 * c) for k, (n, s, c) in as_table(rows).items()}
    got = stored(engine)
    assert got.keys() == doubled.keys()
    for key, (n, s, c) in doubled.items():
        assert got[key][:2] == (n, s)
        assert got[key][2] == pytest.approx(c, abs=1e-9)


def test_write_batch_keeps_pairs_exact_and_ignores_duplicates(engine: Engine) -> None:
    first = many("a", 300, seed=2)
    write_batch(engine, first)
    again = write_batch(engine, first[:100] + many("b", 200, seed=3) + many("b", 50, seed=3))
    assert (again.inserted, again.duplicates) == (200, 150)
    expected = as_table(pair_increments(first + many("b", 200, seed=3)))
    got = stored(engine)
    assert got.keys() == expected.keys()
    for key, (n, s, c) in expected.items():
        assert got[key][:2] == (n, s)
        assert got[key][2] == pytest.approx(c, abs=1e-9)
    # SQLAlchemy binds land on the rows write_batch made (same stored bucket text)
    with engine.begin() as conn:
        core_writer.add_pairs(conn, pair_increments(first))
    assert stored(engine).keys() == expected.keys()


def test_migration_backfill_builds_what_the_write_path_builds(engine: Engine) -> None:
    stuffed = (*(f"s{i:02d}" for i in range(14, 0, -1)), "metoo")
    # "a_c" < "ab" in code point order, the other way round in a locale collation
    written = [*many("m", 400, seed=4), post("spam", 7, stuffed, -0.5),
               post("under", 9, ("ab", "a_c", "metoo"), 0.3)]
    write_batch(engine, written[:250])
    write_batch(engine, written[250:])
    expected = as_table(pair_increments(written))
    assert ("a_c", "ab", T0 + timedelta(minutes=5)) in expected
    by_write_path = stored(engine)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002_views")
    migrate(engine)  # 0003 again: creates the table and fills it from posts/post_tags
    backfilled = stored(engine)
    for table in (by_write_path, backfilled):
        assert table.keys() == expected.keys()
        for key, (n, s, c) in expected.items():
            assert table[key][:2] == (n, s)
            assert table[key][2] == pytest.approx(c, abs=1e-9)
    # the stuffed post's 15th tag is not paired with its first ten
    assert not any("metoo" in (a, b) and {a, b} & set(stuffed[:-1]) for a, b, _ in backfilled)
