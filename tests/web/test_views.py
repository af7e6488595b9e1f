"""Issue 15, the dashboard's views over the API: ranges shorter than a day, the alerts of
the shown tags and range (the charts' markers), and a link with a token that keeps its view.
Runs on SQLite and PostgreSQL (the ``engine`` fixture)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.store.db import make_engine, migrate
from monitor.store.schema import alerts
from tests.web.conftest import Seeded, serve

TOKEN = "s3cret-token-for-tests"


def get(base: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=10)  # type: ignore[arg-type]


def add_history(engine: Engine, now: datetime) -> None:
    """Beside the seeded firing (metoo) and pending (a hostile tag) alerts: a notallmen
    alert resolved 4 h ago, a metoo one resolved 3 days ago, and an inactive one whose
    fired_at is left from an old episode."""
    ago = lambda hours: now - timedelta(hours=hours)  # noqa: E731
    with engine.begin() as conn:
        conn.execute(alerts.insert(), [
            {"fingerprint": "f3", "rule": "notallmen-spike", "labels": {"tag": "notallmen"},
             "state": "resolved", "active_since": None, "fired_at": ago(5),
             "resolved_at": ago(4), "value": 3.0, "summary": "#notallmen 3x",
             "annotations": {}},
            {"fingerprint": "f4", "rule": "metoo-old", "labels": {"tag": "metoo"},
             "state": "resolved", "active_since": None, "fired_at": ago(72),
             "resolved_at": ago(71), "value": 2.0, "summary": "old", "annotations": {}},
            {"fingerprint": "f5", "rule": "metoo-quiet", "labels": {"tag": "metoo"},
             "state": "inactive", "active_since": None, "fired_at": ago(1),
             "resolved_at": None, "value": 1.0, "summary": "", "annotations": {}},
        ])


def rules(body: dict[str, list[dict[str, object]]]) -> list[object]:
    return [a["rule"] for a in body["alerts"]]


def test_alerts_of_the_shown_tags_and_range(engine: Engine, seeded: Seeded,
                                            base_url: str) -> None:
    add_history(engine, seeded.now)
    shown = {"tag": ["metoo", "notallmen"], "state": "all"}
    # earliest episode first; the resolved one overlaps 6 h, the inactive one is no marker
    assert rules(get(base_url, "/api/alerts", since="6h", **shown).json()) == [
        "notallmen-spike", "metoo-spike"]
    # the last hour: only what is still firing (it began 3 h ago)
    assert rules(get(base_url, "/api/alerts", since="1h", **shown).json()) == ["metoo-spike"]
    assert rules(get(base_url, "/api/alerts", since="7d", tag="metoo", state="all").json()
                 ) == ["metoo-old", "metoo-spike"]
    # an absolute range that ended before the firing alert began
    until = (seeded.now - timedelta(hours=70)).isoformat()
    assert rules(get(base_url, "/api/alerts", since="2d", until=until, tag="metoo",
                     state="all").json()) == ["metoo-old"]
    # without tags, every tag; state keeps its meaning (active = firing and pending)
    assert set(rules(get(base_url, "/api/alerts", since="6h").json())) == {
        "metoo-spike", "<b>rule</b>"}
    body = get(base_url, "/api/alerts", since="6h", tag="notallmen", state="resolved").json()
    assert body["alerts"][0]["resolved_at"] is not None and len(body["alerts"]) == 1
    # the plain list is unchanged: newest first, no range
    assert rules(get(base_url, "/api/alerts").json()) == ["<b>rule</b>", "metoo-spike"]
    # the same checks as everywhere else
    bad = get(base_url, "/api/alerts", since="soon", tag="metoo")
    assert bad.status_code == 400 and bad.json()["error"].startswith("since:")
    many = get(base_url, "/api/alerts", since="6h", tag=[f"t{i}" for i in range(13)])
    assert many.status_code == 400 and many.json()["error"].startswith("tag:")


@pytest.mark.parametrize(("since", "points"), [("1h", 12), ("6h", 72)])
def test_ranges_shorter_than_a_day_in_5_minute_steps(base_url: str, since: str,
                                                     points: int) -> None:
    body = get(base_url, "/api/series", tag="metoo", since=since).json()
    assert body["step_seconds"] == 300
    got = len(body["series"][0]["points"])
    # whole 5-minute steps from the one holding `since` to the one holding now
    start = datetime.fromisoformat(body["since"])
    end = datetime.fromisoformat(body["until"])
    assert got == math.ceil((end - start).total_seconds() / 300)
    assert got in (points, points + 1)
    # the seeded metoo posts at 2 h and 5 h ago fall in 6 h, none in the last hour
    assert body["series"][0]["posts"] == (0 if since == "1h" else 2)


def test_a_token_link_keeps_its_view(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    config = parse_config({"web": {"host": "0.0.0.0", "token": TOKEN}}, env={})
    with serve(engine, config) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.get("/", params={"token": TOKEN, "tags": "metoo,notallmen",
                                    "since": "6h", "step": "15m"})
        assert r.status_code == 303
        assert r.headers["location"] == "/?tags=metoo%2Cnotallmen&since=6h&step=15m"
        assert client.get("/", params={"token": TOKEN}).headers["location"] == "/"
    engine.dispose()
