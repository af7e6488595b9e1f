"""posts and post_tags partitioned by month on PostgreSQL (issue 14, migration 0010).

The behaviour tests run on both databases (SQLite is unpartitioned and must
behave the same); the layout checks (which partition a row is in, the gate
table, dropped months) are PostgreSQL's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, func, inspect, select

from monitor.models import ScoredPost, Sentiment
from monitor.store.db import MIGRATIONS_DIR, make_engine, migrate
from monitor.store.edits import apply_edits
from monitor.store.partitions import ensure_partitions, forget_months, month_of, post_keys
from monitor.store.retention import RetentionAges, run_retention
from monitor.store.schema import post_tags, posts, tag_buckets, tag_pair_buckets
from monitor.store.write import write_batch
from tests.conftest import pg_schema_url

NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


def post(key: str, created: datetime, tags: tuple[str, ...] = ("metoo", "ididit"),
         text: str = "t", compound: float = 0.4) -> ScoredPost:
    return ScoredPost(platform="mastodon", key=key, created_at=created, url=None,
                      author=f"a-{key}", text=text, lang="en", tags=tags, is_repost=False,
                      sensitive=False, sentiment=Sentiment(compound, 0.3, 0.6, 0.1))


# one post in each of four months, two of them in September
SPREAD = [post("jul", datetime(2026, 7, 31, 23, 59, 59, tzinfo=UTC)),
          post("aug", datetime(2026, 8, 1, 0, 0, tzinfo=UTC)),
          post("sep1", datetime(2026, 9, 15, 12, 0, tzinfo=UTC)),
          post("sep2", datetime(2026, 9, 30, 23, 0, tzinfo=UTC)),
          post("nov", datetime(2026, 11, 20, 8, 0, tzinfo=UTC))]


@pytest.fixture
def pg() -> Iterator[Engine]:
    """A migrated PostgreSQL schema (the layout checks are PostgreSQL's)."""
    for url in pg_schema_url():
        engine = make_engine(url)
        migrate(engine)
        yield engine
        forget_months(engine)
        engine.dispose()


def where_rows(engine: Engine, table: str) -> dict[str, str]:
    """key (posts) or post key + tag (post_tags) → the partition holding the row."""
    with engine.connect() as conn:
        if table == "posts":
            sql = "SELECT key, tableoid::regclass::text FROM posts"
        else:
            sql = ("SELECT p.key || '/' || t.tag, t.tableoid::regclass::text FROM post_tags t "
                   "JOIN posts p ON p.id = t.post_id")
        return dict(conn.execute(sa.text(sql)).all())  # type: ignore[arg-type]


def gate(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r.key: int(r.id) for r in conn.execute(select(post_keys.c.key, post_keys.c.id))}


def ids(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r.key: int(r.id) for r in conn.execute(select(posts.c.key, posts.c.id))}


def table_rows(engine: Engine, tbl: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(tbl)))


def exists(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None


# ------------------------------------------------------------------ both databases

def test_dedupe_across_months(engine: Engine) -> None:
    """The same post with another created_at (seconds vs milliseconds, another
    month even) is a duplicate: dedupe is by (platform, key) alone."""
    first = write_batch(engine, [post("x", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))],
                        now=NOW)
    again = write_batch(engine, [post("x", datetime(2026, 11, 1, 0, 0, 0, 1, tzinfo=UTC)),
                                 post("x", datetime(2026, 10, 31, 23, 59, 59, 999, tzinfo=UTC))],
                        now=NOW)
    assert (first.inserted, again.inserted, again.duplicates) == (1, 0, 2)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(posts)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(post_tags)).scalar() == 2
    assert sum(r[2] for r in table_rows(engine, tag_buckets)) == 2  # one post, two tags


def test_posts_across_months_read_and_delete_like_one_table(engine: Engine) -> None:
    write_batch(engine, SPREAD, now=NOW)
    assert set(ids(engine)) == {p.key for p in SPREAD}
    gone = write_batch(engine, [], deleted=[("mastodon", "sep1"), ("mastodon", "jul")], now=NOW)
    assert gone.removed == 2
    assert set(ids(engine)) == {"aug", "sep2", "nov"}
    # a deleted post served again stays out (its tombstone), in any month
    back = write_batch(engine, [post("jul", datetime(2026, 12, 1, tzinfo=UTC))], now=NOW)
    assert back.inserted == 0


# ------------------------------------------------------------------ PostgreSQL

@pytest.mark.postgres
def test_rows_land_in_their_month(pg: Engine) -> None:
    write_batch(pg, SPREAD, now=NOW)
    assert where_rows(pg, "posts") == {
        "jul": "posts_p2026_07", "aug": "posts_p2026_08", "sep1": "posts_p2026_09",
        "sep2": "posts_p2026_09", "nov": "posts_p2026_11"}
    tags = where_rows(pg, "post_tags")
    assert len(tags) == 10
    assert all(part == f"post_tags_{where_rows(pg, 'posts')[k.split('/')[0]][6:]}"
               for k, part in tags.items())
    assert gate(pg) == ids(pg)
    # the current and the next month exist before any post needs them
    assert exists(pg, "posts_p2026_12") and exists(pg, "posts_p2027_01")


@pytest.mark.postgres
def test_a_future_month_post_gets_its_partition(pg: Engine) -> None:
    soon = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)  # next month, seen from NOW
    later = datetime(2027, 4, 2, tzinfo=UTC)
    write_batch(pg, [post("soon", soon), post("later", later)], now=NOW)
    assert where_rows(pg, "posts") == {"soon": "posts_p2027_01", "later": "posts_p2027_04"}
    assert gate(pg) == ids(pg)


@pytest.mark.postgres
def test_rows_in_the_default_partition_move_into_their_new_month(pg: Engine) -> None:
    """A row stored while its month had no partition (here: inserted directly) sits in
    the default partition; creating the month moves it, id and tags included."""
    at = datetime(2025, 3, 3, tzinfo=UTC)
    with pg.begin() as conn:
        pid = conn.execute(posts.insert().values(
            platform="mastodon", key="early", created_at=at, collected_at=at, is_repost=False,
            sensitive=False).returning(posts.c.id)).scalar_one()
        conn.execute(post_tags.insert().values(post_id=pid, tag="metoo", created_at=at))
        conn.execute(post_keys.insert().values(platform="mastodon", key="early", id=pid,
                                               created_at=at))
    assert where_rows(pg, "posts") == {"early": "posts_default"}
    write_batch(pg, [post("late", at + timedelta(days=1))], now=NOW)
    assert where_rows(pg, "posts") == {"early": "posts_p2025_03", "late": "posts_p2025_03"}
    assert where_rows(pg, "post_tags")["early/metoo"] == "post_tags_p2025_03"
    assert ids(pg)["early"] == pid and gate(pg) == ids(pg)  # the move kept the gate rows


@pytest.mark.postgres
def test_gate_follows_deletes_edits_and_key_changes(pg: Engine) -> None:
    write_batch(pg, SPREAD, now=NOW)
    write_batch(pg, [], deleted=[("mastodon", "aug")], now=NOW)
    assert "aug" not in gate(pg) and gate(pg) == ids(pg)
    result = apply_edits(pg, [post("sep1", SPREAD[2].created_at, tags=("metoo",), text="new")],
                         now=NOW)
    assert result.updated == 1 and gate(pg) == ids(pg)
    with pg.connect() as conn:
        assert conn.execute(select(posts.c.text).where(posts.c.key == "sep1")).scalar() == "new"
    # the pseudonymous-key conversion rewrites posts.key: the gate row follows
    with pg.begin() as conn:
        conn.execute(posts.update().where(posts.c.key == "nov").values(key="pk1:nov"))
    assert gate(pg) == ids(pg) and "pk1:nov" in gate(pg)
    assert write_batch(pg, [post("pk1:nov", NOW)], now=NOW).inserted == 0
    assert write_batch(pg, [post("nov", NOW)], now=NOW).inserted == 1


@pytest.mark.postgres
def test_retention_drops_whole_months_and_deletes_the_rest_row_by_row(pg: Engine) -> None:
    write_batch(pg, [*SPREAD, post("dec", NOW - timedelta(hours=1))], now=NOW)
    rollups = table_rows(pg, tag_buckets), table_rows(pg, tag_pair_buckets)
    # cutoff 2026-09-20: July and August are past the age as a whole, September half
    totals = run_retention(pg, RetentionAges(posts=NOW - datetime(2026, 9, 20, tzinfo=UTC)),
                           NOW)
    assert totals == {"posts": 3}
    assert not exists(pg, "posts_p2026_07") and not exists(pg, "post_tags_p2026_08")
    assert exists(pg, "posts_p2026_09")
    assert set(ids(pg)) == {"sep2", "nov", "dec"} and gate(pg) == ids(pg)
    with pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(post_tags)).scalar() == 6
    assert (table_rows(pg, tag_buckets), table_rows(pg, tag_pair_buckets)) == rollups
    # a post of a dropped month served again is stored again, in a new partition
    assert write_batch(pg, [SPREAD[0]], now=NOW).inserted == 1
    assert where_rows(pg, "posts")["jul"] == "posts_p2026_07"


@pytest.mark.postgres
def test_ensure_is_cached_and_creates_nothing_twice(pg: Engine) -> None:
    ensure_partitions(pg, [datetime(2026, 5, 5, tzinfo=UTC)], NOW)
    forget_months(pg)  # another process made them: found in the catalog, not re-created
    ensure_partitions(pg, [datetime(2026, 5, 6, tzinfo=UTC)], NOW)
    with pg.connect() as conn:
        names = set(conn.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'posts'::regclass")).scalars())
    # the migration made the real current and next month; ensure those of NOW and May
    first = datetime.now(UTC).replace(day=1)
    made_by_migration = {f"posts_p{month_of(m):%Y_%m}"
                         for m in (first, first + timedelta(days=32))}
    assert names == {"posts_default", "posts_p2026_05", "posts_p2026_12", "posts_p2027_01",
                     *made_by_migration}


# ------------------------------------------------------------------ migration 0010

def _shape(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in ("posts", "post_tags"):
        out[table] = (
            [(c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
             for c in insp.get_columns(table)],
            insp.get_pk_constraint(table), insp.get_unique_constraints(table),
            insp.get_foreign_keys(table),
            sorted(insp.get_indexes(table), key=lambda ix: str(ix["name"])))
    out["tables"] = sorted(insp.get_table_names())
    return out


def _content(engine: Engine) -> tuple[list[Any], list[Any], int]:
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM posts ORDER BY id"))]
        tags = [tuple(r) for r in conn.execute(sa.text(
            "SELECT * FROM post_tags ORDER BY post_id, tag"))]
        seq = int(conn.execute(sa.text("SELECT last_value FROM posts_id_seq")).scalar_one())
    return rows, tags, seq


@pytest.mark.postgres
def test_0010_converts_in_place_and_downgrades_exactly() -> None:
    for url in pg_schema_url():
        engine = make_engine(url)
        migrate(engine, "0009_pseudonymous_keys")
        with engine.begin() as conn:  # the 0009 table: rows over three months, one gap
            for i, at in enumerate(["2025-12-31 23:59:59.5+00", "2026-01-01 00:00+00",
                                    "2026-03-10 10:00+00", "2026-03-11 10:00+00"]):
                pid = conn.execute(sa.text(
                    "INSERT INTO posts (platform, key, created_at, collected_at, is_repost, "
                    "sensitive, text) VALUES ('mastodon', :k, :t, :t, false, false, :x) "
                    "RETURNING id"), {"k": f"k{i}", "t": at, "x": f"text {i}"}).scalar_one()
                conn.execute(sa.text("INSERT INTO post_tags (post_id, tag, created_at, seq) "
                                     "VALUES (:p, 'metoo', :t, 1), (:p, 'ididit', :t, 2)"),
                             {"p": pid, "t": at})
        before_shape, before = _shape(engine), _content(engine)
        migrate(engine)
        assert _content(engine) == before  # every row and id, the sequence untouched
        assert where_rows(engine, "posts") == {
            "k0": "posts_p2025_12", "k1": "posts_p2026_01", "k2": "posts_p2026_03",
            "k3": "posts_p2026_03"}
        assert gate(engine) == ids(engine)
        # the gate knows the converted posts; new ids continue the sequence
        assert write_batch(engine, [post("k2", NOW)], now=NOW).inserted == 0
        write_batch(engine, [post("new", NOW)], now=NOW)
        assert ids(engine)["new"] > max(ids(engine)[f"k{i}"] for i in range(4))
        after = _content(engine)
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009_pseudonymous_keys")
        assert _shape(engine) == before_shape
        assert _content(engine) == after
        with engine.connect() as conn:  # the unique key is back, and the sequence's owner
            assert conn.execute(sa.text("SELECT pg_get_serial_sequence('posts', 'id')")
                                ).scalar() is not None
        forget_months(engine)
        engine.dispose()
