"""Collection throughput of the collectors behind the user's credentials (Reddit, X).

For each, against its own fake on 127.0.0.1, run in its own process (its own
core: in-process, the fake's thread and the client share the GIL, and every
switch costs the busier client up to 5 ms), with no artificial delay and a rate
window too large to pace:

  (a) the fake's bare rate: a bare ``httpx.AsyncClient`` with the same token
      pages back through the same posts the same way (Reddit ``after``, X
      ``next_token``; 100 per page) and only decodes the JSON;
  (b) the collector's first run pulling the same posts (token, transport,
      budget and rate-limit bookkeeping, parsing, tag matching, Post building).

Best of three runs each, timed from the client being ready; ``collector/fake``
is (b)/(a), the target is >= 0.7. Called from ``benchmarks/collect.py``
(``bench_keyed``), or on its own: ``.venv/bin/python -m benchmarks.collect_keyed``;
the last line is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks.collect_open import BENCH_HTTP, _collect, _pair
from monitor.config import Config
from monitor.models import StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.reddit import RedditCollector, RedditSource
from monitor.sources.x import XCollector, XSource
from tests.fakes.reddit import CLIENT_ID, CLIENT_SECRET
from tests.fakes.x import BEARER

_SERVE = """
import sys, time
from datetime import UTC, datetime, timedelta
from tests.fakes.{module} import start_{module}_fake
fake = start_{module}_fake(**{{"{count}": 0}})
fake.set_rate_limit(10_000_000, 900.0)
start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
for i in range({n}):
    fake.{add}(("metoo",), created_at=start + timedelta(seconds=i * 3))
print(fake.url, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
"""


@contextlib.contextmanager
def _fake_process(module: str, count: str, add: str, n: int) -> Iterator[str]:
    """A fake with *n* posts of #metoo in its own process; yields its URL."""
    code = _SERVE.format(module=module, count=count, add=add, n=n)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        url = proc.stdout.readline().strip()
        if not url:
            raise SystemExit(f"the fake {module} did not start")
        yield url
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_reddit(n: int) -> dict[str, float]:
    with _fake_process("reddit", "posts", "add_post", n) as url:
        return _bench_reddit(url, n)


def _bench_reddit(url: str, n: int) -> dict[str, float]:
    host = url.split("://", 1)[1]
    token = httpx.post(f"{url}/api/v1/access_token", auth=(CLIENT_ID, CLIENT_SECRET),
                       data={"grant_type": "client_credentials"}).json()["access_token"]

    async def bare() -> tuple[int, float]:
        async with httpx.AsyncClient(headers={"Authorization": f"bearer {token}"}) as client:
            started = time.perf_counter()
            count, after = 0, None
            while True:
                params = {"q": "metoo", "sort": "new", "type": "link", "limit": 100,
                          "raw_json": 1, **({"after": after} if after else {})}
                data = (await client.get(f"{url}/search", params=params)).json()["data"]
                count += len(data["children"])
                after = data["after"]
                if not after:
                    return count, time.perf_counter() - started

    async def ours() -> tuple[int, float]:
        cfg = RedditSource(type="reddit", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           auth_url=url, api_url=url, tags=["metoo"],
                           backfill_pages=1_000)
        async with HttpClient(BENCH_HTTP) as http:
            source = RedditCollector(cfg, Config(), http)
            return await _collect(source, StreamKey("reddit", host, "metoo"), None)

    return _pair("reddit", lambda: asyncio.run(bare()), lambda: asyncio.run(ours()), n)


def bench_x(n: int) -> dict[str, float]:
    with _fake_process("x", "tweets", "add_tweet", n) as url:
        return _bench_x(url, n)


def _bench_x(url: str, n: int) -> dict[str, float]:
    host = url.split("://", 1)[1]

    async def bare() -> tuple[int, float]:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {BEARER}"}) as client:
            started = time.perf_counter()
            count, token = 0, None
            while True:
                params = {"query": "#metoo -is:retweet", "max_results": 100,
                          "expansions": "author_id", **({"next_token": token} if token else {})}
                body = (await client.get(f"{url}/2/tweets/search/recent",
                                         params=params)).json()
                count += len(body.get("data", []))
                token = body["meta"].get("next_token")
                if not token:
                    return count, time.perf_counter() - started

    async def ours() -> tuple[int, float]:
        cfg = XSource(type="x", api_url=url, bearer_token=BEARER, tags=["metoo"],
                      backfill_pages=1_000)
        async with HttpClient(BENCH_HTTP) as http:
            source = XCollector(cfg, Config(), http)
            return await _collect(source, StreamKey("x", host, "metoo"), None)

    return _pair("x", lambda: asyncio.run(bare()), lambda: asyncio.run(ours()), n)


def bench_keyed(n: int = 4000) -> dict[str, float]:
    """posts/s of the Reddit and X collectors against their fakes' bare rates."""
    result: dict[str, float] = {}
    result.update(bench_reddit(n))
    result.update(bench_x(n))
    return result


if __name__ == "__main__":
    figures = bench_keyed(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
    print(json.dumps(figures))
