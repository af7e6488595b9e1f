"""/metrics names the cluster's members, what each holds and who holds each role (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from monitor.metrics import build_registry
from monitor.store.cluster import renew_member
from monitor.store.db import make_engine, migrate
from tests.conftest import pg_schema_url


@pytest.mark.postgres
def test_cluster_members_roles_and_hosts_are_scraped() -> None:
    for url in pg_schema_url():
        engine = make_engine(url)
        try:
            migrate(engine)
            now = datetime.now(UTC)
            renew_member(engine, "box-a:11:1", "box-a", 11, now,
                         ["scheduler", "stream:jetstream", "dispatcher"],
                         ["127.0.0.1:4001", "127.0.0.1:4002"], None)
            renew_member(engine, "box-b:12:2", "box-b", 12, now, ["evaluator"], [], None)
            text = generate_latest(build_registry(engine)).decode()
        finally:
            engine.dispose()
        assert "monitor_cluster_members 2.0" in text
        assert 'monitor_cluster_hosts_held{member="box-a:11:1"} 2.0' in text
        assert 'monitor_cluster_role_renewed_seconds{member="box-a:11:1",role="stream:jetstream"}' \
            in text
        assert 'monitor_cluster_role_renewed_seconds{member="box-b:12:2",role="evaluator"}' in text
        assert 'monitor_cluster_member_renewed_seconds{member="box-b:12:2"}' in text
        assert "monitor_store_up 1.0" in text


def test_sqlite_has_no_cluster_figures(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/monitor.db")
    migrate(engine)
    text = generate_latest(build_registry(engine)).decode()
    engine.dispose()
    assert "monitor_cluster" not in text
    assert "monitor_store_up 1.0" in text
