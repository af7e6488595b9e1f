"""Issue 11, security: no open dashboard however it starts, a signed session cookie,
private database files."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import httpx
import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.store.db import make_engine, migrate
from monitor.web.server import serve as serve_dashboard
from monitor.web.session import COOKIE, make_session, valid_session
from tests.web.conftest import serve

TOKEN = "s3cret-token-for-tests"


async def test_serve_refuses_an_open_address_even_when_the_config_disables_the_dashboard(
        tmp_path: Path) -> None:
    # `monitor web --host 0.0.0.0` with `web.enabled: false` skipped the token rule
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    migrate(engine)
    config = parse_config({"web": {"enabled": False, "host": "0.0.0.0", "port": 0}}, env={})
    with pytest.raises(ConfigError, match=r"web: host: token is required when host is "
                                          r"'0\.0\.0\.0'"):
        await asyncio.wait_for(serve_dashboard(engine, config), 5)
    engine.dispose()


def test_the_session_cookie_is_signed_and_never_the_token(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate(engine)
    config = parse_config({"web": {"host": "0.0.0.0", "token": TOKEN}}, env={})
    with serve(engine, config) as base:
        with httpx.Client(base_url=base, timeout=10) as client:
            r = client.get("/", params={"token": TOKEN})
            assert r.status_code == 303
            header = r.headers["set-cookie"]
            assert TOKEN not in header
            lowered = header.lower()
            assert "httponly" in lowered and "samesite=strict" in lowered
            assert "secure" not in lowered  # plain http on loopback
            value = client.cookies[COOKIE]
            assert valid_session(value, TOKEN)
            assert client.get("/api/tags").status_code == 200
        # the raw token as a cookie (what the old cookie held) opens nothing
        for name in (COOKIE, "monitor_token"):
            r = httpx.get(base + "/api/tags", cookies={name: TOKEN}, timeout=10)
            assert r.status_code == 401
        # a tampered or expired session opens nothing either
        forged = value[:-1] + ("0" if value[-1] != "0" else "1")
        assert httpx.get(base + "/api/tags", cookies={COOKIE: forged}, timeout=10
                         ).status_code == 401
        old = make_session(TOKEN, now=0)
        assert httpx.get(base + "/api/tags", cookies={COOKIE: old}, timeout=10
                         ).status_code == 401
        # behind a TLS proxy on loopback (X-Forwarded-Proto), the cookie is Secure
        r = httpx.get(base + "/", params={"token": TOKEN}, timeout=10,
                      headers={"x-forwarded-proto": "https"}, follow_redirects=False)
        assert "secure" in r.headers["set-cookie"].lower()
    engine.dispose()


def test_a_session_made_with_another_token_is_refused() -> None:
    assert not valid_session(make_session("another-token-entirely"), TOKEN)
    assert not valid_session("v1.99999999999.00.zz", TOKEN)
    assert not valid_session("", TOKEN)


def test_sqlite_database_wal_and_shm_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which gave 0644 before
    try:
        engine = make_engine(f"sqlite:///{tmp_path}/db/monitor.db")
        migrate(engine)
        with engine.connect():
            names = sorted(p.name for p in (tmp_path / "db").iterdir())
            assert names == ["monitor.db", "monitor.db-shm", "monitor.db-wal"]
            for name in names:
                mode = stat.S_IMODE((tmp_path / "db" / name).stat().st_mode)
                assert mode == 0o600, (name, oct(mode))
        engine.dispose()
    finally:
        os.umask(old)
