"""Migration 0012: PostgreSQL rollup tables leave room for HOT updates; the downgrade is exact."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine

from monitor.store.db import MIGRATIONS_DIR, make_engine, migrate

ROLLUPS = ("tag_buckets", "tag_pair_buckets")


def _options(engine: Engine) -> dict[str, list[str] | None]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN :names"
            " AND relnamespace = to_regnamespace(current_schema())"
        ).bindparams(sa.bindparam("names", expanding=True)), {"names": list(ROLLUPS)}).all()
    return {name: options for name, options in rows}


def _downgrade(engine: Engine, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_rollups_get_fillfactor_and_the_downgrade_resets_it(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine, "0011_cluster")
    before = _options(engine)
    assert before == {"tag_buckets": None, "tag_pair_buckets": None}
    migrate(engine)
    assert _options(engine) == {name: ["fillfactor=70"] for name in ROLLUPS}
    _downgrade(engine, "0011_cluster")
    assert _options(engine) == before
    migrate(engine)  # and up again
    assert _options(engine) == {name: ["fillfactor=70"] for name in ROLLUPS}
    engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_is_untouched_both_ways(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.connect() as conn:
        head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert head == "0012_rollup_fillfactor"
    _downgrade(engine, "0011_cluster")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM tag_buckets")).scalar_one() == 0
    engine.dispose()
