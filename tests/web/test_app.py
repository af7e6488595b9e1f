"""The JSON API, /metrics, /healthz and the access token, over a real server on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.models import StreamKey
from monitor.store.db import make_engine, migrate
from monitor.store.write import record_failure, write_batch
from tests.analyse.seed import scored
from tests.web.conftest import EVIL_TAG, EVIL_TEXT, Seeded, serve

TOKEN = "s3cret-token-for-tests"


def get(base: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=10)  # type: ignore[arg-type]


def test_series_totals_and_filled_points(base_url: str, seeded: Seeded) -> None:
    body = get(base_url, "/api/series", tag=["metoo", "notallmen"], since="7d", step="1h").json()
    assert body["step_seconds"] == 3600
    metoo, notallmen = body["series"]
    assert (metoo["tag"], metoo["posts"], metoo["scored"]) == ("metoo", 4, 3)
    assert metoo["mean_compound"] == pytest.approx(seeded.metoo_mean)
    assert (metoo["positive"], metoo["neutral"], metoo["negative"]) == (2, 0, 1)
    assert notallmen["posts"] == 2
    # 7 days hourly, no holes: every hour is a point, and they add up to the totals
    assert len(metoo["points"]) in (168, 169)
    assert sum(p[1] for p in metoo["points"]) == 4


def test_auto_step_picks_readable_resolution(base_url: str) -> None:
    assert get(base_url, "/api/series", tag="metoo", since="24h").json()["step_seconds"] == 300
    assert get(base_url, "/api/series", tag="metoo", since="90d").json()["step_seconds"] == 86400


def test_top_cotags_posts_alerts(base_url: str) -> None:
    top = get(base_url, "/api/top", since="7d").json()["tags"]
    by_tag = {t["tag"]: t for t in top}
    assert by_tag["metoo"]["posts"] == 4
    co = get(base_url, "/api/cotags", tag="#MeToo", since="7d").json()
    assert {c["tag"]: c["posts"] for c in co["cotags"]} == {
        "howiwillchange": 1, "notallmen": 1, EVIL_TAG: 1}
    assert co["cotags"][0]["share"] == pytest.approx(0.25)
    posts = get(base_url, "/api/posts", tag="metoo", limit=10).json()
    assert [p["text"] for p in posts["posts"]][:2] == ["listen", "no score"]
    assert EVIL_TEXT in [p["text"] for p in posts["posts"]]
    assert all("author" not in p for p in posts["posts"])
    active = get(base_url, "/api/alerts").json()["alerts"]
    assert {a["state"] for a in active} == {"firing", "pending"}
    assert get(base_url, "/api/alerts", state="resolved").json()["alerts"] == []


def test_relate_finds_the_seeded_lag(base_url: str) -> None:
    body = get(base_url, "/api/relate", a="alpha", b="beta", since="30d").json()
    assert body["best_lag_hours"] == 3
    assert body["significant"] is True
    assert "3 h after #alpha" in body["summary"]
    assert len(body["lags"]) == len(body["r"]) == 97


def test_bad_input_is_a_400_naming_the_parameter(base_url: str) -> None:
    r = get(base_url, "/api/series", tag="metoo", step="7m")
    assert r.status_code == 400 and r.json()["error"].startswith("step:")
    r = get(base_url, "/api/series", tag="metoo", since="yesterday")
    assert r.status_code == 400 and "since" in r.json()["error"]
    r = get(base_url, "/api/relate", a="metoo", b="metoo")
    assert r.status_code == 400 and "two different tags" in r.json()["error"]
    r = get(base_url, "/api/cotags", tag="###")
    assert r.status_code == 400 and r.json()["error"].startswith("tag:")
    assert get(base_url, "/api/top", limit="lots").status_code == 400


def test_page_assets_are_local_with_a_strict_csp(base_url: str) -> None:
    page = httpx.get(base_url + "/", timeout=10)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    refs = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert refs and all(ref.startswith(("/", "data:")) for ref in refs), refs
    for asset in ("/static/app.js", "/static/charts.js", "/static/app.css"):
        r = httpx.get(base_url + asset, timeout=10)
        assert r.status_code == 200 and len(r.content) > 1000
        assert "https://" not in r.text and "cdn" not in r.text.lower()


def test_metrics_and_healthz(engine: Engine, seeded: Seeded, base_url: str) -> None:
    stream = StreamKey("mastodon", "mastodon.social", "metoo")
    write_batch(engine, [scored("s1", seeded.now, ("metoo",), 0.1)], stream=stream, rejected=2)
    record_failure(engine, stream, "HTTP 503 from mastodon.social")
    text = httpx.get(base_url + "/metrics", timeout=10).text
    labels = '{source="mastodon",stream="mastodon.social#metoo"}'
    assert f"monitor_posts_collected_total{labels} 1.0" in text
    assert f"monitor_posts_rejected_total{labels} 2.0" in text
    assert f"monitor_fetch_errors_total{labels} 1.0" in text
    assert "monitor_collector_lag_seconds" in text
    assert 'monitor_alerts_firing{rule="metoo-spike"} 1.0' in text
    assert "monitor_outbox_depth 0.0" in text
    assert "monitor_bucket_write_seconds_bucket" in text
    health = httpx.get(base_url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    streams = get(base_url, "/api/health").json()["streams"]
    assert streams[0]["posts_rejected"] == 2 and streams[0]["fetch_errors"] == 1


def test_token_guards_api_and_metrics_not_healthz(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    config = parse_config({"web": {"host": "0.0.0.0", "token": TOKEN}}, env={})
    with serve(engine, config) as base:
        assert httpx.get(base + "/api/tags", timeout=10).status_code == 401
        assert httpx.get(base + "/metrics", timeout=10).status_code == 401
        bad = {"authorization": "Bearer wrong-token-wrong-token"}
        assert httpx.get(base + "/api/tags", headers=bad, timeout=10).status_code == 401
        ok = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(base + "/api/tags", headers=ok, timeout=10).json()["followed"]
        assert httpx.get(base + "/healthz", timeout=10).status_code == 200
        # opening the page once with ?token= trades it for an HttpOnly cookie
        with httpx.Client(base_url=base, timeout=10) as client:
            r = client.get("/", params={"token": TOKEN})
            assert r.status_code == 303 and r.headers["location"] == "/"
            assert "httponly" in r.headers["set-cookie"].lower()
            assert client.get("/api/tags").status_code == 200
            assert client.get("/", params={"token": "nope"}).status_code == 401


def test_token_is_required_off_loopback() -> None:
    with pytest.raises(ConfigError, match=r"web: token is required when host is '0\.0\.0\.0'"):
        parse_config({"web": {"host": "0.0.0.0"}}, env={})
    assert parse_config({"web": {"host": "::1"}}, env={}).web.token is None
