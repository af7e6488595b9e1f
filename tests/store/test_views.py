"""The SQL views researchers query directly: same names, columns and numbers on SQLite
and PostgreSQL, and gone again after a downgrade."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, inspect, text

from monitor.store.db import MIGRATIONS_DIR, make_engine, migrate
from monitor.store.write import write_batch
from tests.analyse.seed import scored
from tests.conftest import pg_schema_url

T0 = datetime(2026, 5, 10, tzinfo=UTC)
SERIES_COLUMNS = ["bucket", "tag", "posts", "scored", "mean_compound", "positive", "neutral",
                  "negative"]


def seed(engine: Engine) -> None:
    write_batch(engine, [
        scored("1", T0 + timedelta(hours=1, minutes=5), ("metoo", "howiwillchange"), 0.6),
        scored("2", T0 + timedelta(hours=1, minutes=55), ("metoo",), -0.2),
        scored("3", T0 + timedelta(hours=3), ("metoo", "howiwillchange"), None),
        scored("4", T0 + timedelta(days=1, hours=23, minutes=59), ("metoo", "notallmen"), 0.0),
    ])


def rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_hourly_and_daily_series_views(engine: Engine) -> None:
    seed(engine)
    names = set(inspect(engine).get_view_names())
    assert {"tag_series_hourly", "tag_series_daily", "tag_pairs_daily"} <= names
    cols = [c["name"] for c in inspect(engine).get_columns("tag_series_hourly")]
    assert cols == SERIES_COLUMNS
    hourly = rows(engine, "SELECT bucket, posts, scored, mean_compound, positive, neutral, "
                          "negative FROM tag_series_hourly WHERE tag = 'metoo' ORDER BY bucket")
    assert [str(r[0])[:16] for r in hourly] == [
        "2026-05-10 01:00", "2026-05-10 03:00", "2026-05-11 23:00"]
    assert [tuple(r[1:3]) for r in hourly] == [(2, 2), (1, 0), (1, 1)]
    assert hourly[0][3] == pytest.approx(0.2)
    assert hourly[1][3] is None
    assert tuple(hourly[0][4:]) == (1, 0, 1)
    daily = rows(engine, "SELECT bucket, tag, posts FROM tag_series_daily ORDER BY bucket, tag")
    assert [(str(b)[:10], t, int(str(p))) for b, t, p in daily] == [
        ("2026-05-10", "howiwillchange", 2), ("2026-05-10", "metoo", 3),
        ("2026-05-11", "metoo", 1), ("2026-05-11", "notallmen", 1)]


def test_daily_pairs_view(engine: Engine) -> None:
    seed(engine)
    pairs = rows(engine, "SELECT day, tag_a, tag_b, posts FROM tag_pairs_daily ORDER BY day")
    assert [(str(d)[:10], a, b, int(str(n))) for d, a, b, n in pairs] == [
        ("2026-05-10", "howiwillchange", "metoo", 2), ("2026-05-11", "metoo", "notallmen", 1)]


@pytest.mark.postgres
def test_postgres_views_follow_utc_whatever_the_session_zone() -> None:
    for url in pg_schema_url():
        engine = make_engine(url)
        migrate(engine)
        seed(engine)
        with engine.connect() as conn:
            conn.execute(text("SET TIME ZONE 'America/Los_Angeles'"))
            days = [r[0] for r in conn.execute(text(
                "SELECT bucket AT TIME ZONE 'UTC' FROM tag_series_daily WHERE tag = 'metoo' "
                "ORDER BY bucket"))]
            pair_days = [r[0] for r in conn.execute(text("SELECT day FROM tag_pairs_daily "
                                                         "ORDER BY day"))]
        engine.dispose()
        assert [d.strftime("%Y-%m-%d %H:%M") for d in days] == [
            "2026-05-10 00:00", "2026-05-11 00:00"]
        # 01:05 UTC on the 10th is still the 9th in Los Angeles: days are UTC days
        assert [str(d) for d in pair_days] == ["2026-05-10", "2026-05-11"]


def test_downgrade_drops_the_views(engine: Engine) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001_spine")
    assert not {"tag_series_hourly", "tag_pairs_daily"} & set(inspect(engine).get_view_names())
    assert "tag_buckets" in inspect(engine).get_table_names()
