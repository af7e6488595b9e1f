"""Issue 11, overload: bounded ranges and steps, a time budget, bounded heavy queries."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitor.config import parse_config
from monitor.web.app import _guarded, _Limits


def get(base: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=30)  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "params"), [
    ("/api/series", {"tag": "metoo", "since": "999999999d"}),
    ("/api/series", {"tag": "metoo", "since": "999999999d", "step": "5m"}),
    ("/api/series", {"tag": "metoo", "step": "99999999999w"}),
    ("/api/series", {"tag": "metoo", "step": "999999d"}),
    ("/api/series", {"tag": "metoo", "until": "9999-12-31", "step": "5m"}),
    ("/api/top", {"since": "999999999d"}),
    ("/api/cotags", {"tag": "metoo", "since": "999999999d"}),
    ("/api/relate", {"a": "metoo", "b": "notallmen", "since": "999999999d"}),
    ("/api/relate", {"a": "metoo", "b": "notallmen", "since": "0001-01-01"}),
])
def test_absurd_ranges_and_steps_are_a_quick_answer_never_a_500(
        base_url: str, path: str, params: dict[str, str]) -> None:
    started = time.monotonic()
    r = get(base_url, path, **params)
    assert r.status_code in (200, 400), r.text
    assert time.monotonic() - started < 10
    if r.status_code == 400:
        assert r.json()["error"].split(":")[0] in ("since", "until", "step")


def test_a_huge_relate_range_is_clipped_to_the_data(base_url: str) -> None:
    # 100 years of hours used to be built in memory (9-21 s of CPU, 2 GB for 8 requests)
    started = time.monotonic()
    r = get(base_url, "/api/relate", a="alpha", b="beta", since="36500d")
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 5
    body = r.json()
    assert body["points"] < 24 * 30  # the seeded 20 days, not a century
    assert body["best_lag_hours"] == 3


def test_a_huge_series_range_is_clipped_to_the_data(base_url: str) -> None:
    r = get(base_url, "/api/series", tag="metoo", since="999999999d", step="5m")
    assert r.status_code == 200, r.text
    (metoo,) = r.json()["series"]
    assert metoo["posts"] == 5  # every metoo post, the 40-day-old one included
    assert len(metoo["points"]) < 200_000


def _app(limits: _Limits, release: threading.Event) -> Starlette:
    def slow(request: Request) -> JSONResponse:
        release.wait(10)
        return JSONResponse({"ok": True})

    def quick(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/slow", _guarded(slow, None, limits, heavy=True)),
                             Route("/quick", _guarded(quick, None, limits, heavy=True))])


async def test_a_request_past_its_budget_is_a_503_and_keeps_its_slot_until_done() -> None:
    release = threading.Event()
    limits = _Limits(budget=0.3, heavy=1)
    transport = httpx.ASGITransport(app=_app(limits, release))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        started = time.monotonic()
        r = await client.get("/slow")
        assert r.status_code == 503 and "longer than 0.3s" in r.json()["error"]
        assert time.monotonic() - started < 3
        # the abandoned query still runs: the only heavy slot stays taken
        r = await client.get("/quick")
        assert r.status_code == 503 and r.json()["error"].startswith("busy")
        release.set()
        for _ in range(100):
            if not limits.slots().locked():
                break
            await asyncio.sleep(0.02)
        assert (await client.get("/quick")).status_code == 200


async def test_concurrent_heavy_queries_are_bounded() -> None:
    release = threading.Event()
    limits = _Limits(budget=2.0, heavy=2)
    transport = httpx.ASGITransport(app=_app(limits, release))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        tasks = [asyncio.create_task(client.get("/slow")) for _ in range(3)]
        await asyncio.sleep(0.5)
        release.set()
        codes = sorted(r.status_code for r in await asyncio.gather(*tasks))
    # two ran, the third waited for a slot and got one once they finished
    assert codes == [200, 200, 200]
    running: list[int] = []
    peak = 0
    lock = threading.Lock()

    def counted(request: Request) -> JSONResponse:
        nonlocal peak
        with lock:
            running.append(1)
            peak = max(peak, len(running))
        time.sleep(0.2)
        with lock:
            running.pop()
        return JSONResponse({})

    app = Starlette(routes=[Route("/c", _guarded(counted, None, _Limits(5.0, 2), heavy=True))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        await asyncio.gather(*(client.get("/c") for _ in range(6)))
    assert peak == 2


def test_web_settings_bound_the_budget_and_slots() -> None:
    web = parse_config({"web": {"request_budget": "3s", "heavy_queries": 4}}, env={}).web
    assert (web.request_budget.total_seconds(), web.heavy_queries) == (3.0, 4)
    defaults = parse_config({}, env={}).web
    assert (defaults.request_budget.total_seconds(), defaults.heavy_queries) == (10.0, 2)
