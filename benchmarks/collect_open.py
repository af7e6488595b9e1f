"""Collection throughput of the open-platform collectors (Misskey, Lemmy, HN, RSS/Atom).

For each, against its own fake on 127.0.0.1 with no artificial delay:

  (a) the fake's bare rate: a bare ``httpx.AsyncClient`` pages through the
      same posts the same way and only decodes the answer (JSON; for a feed,
      the feedparser parse, since a feed has no cheaper decoding);
  (b) the collector pulling the same posts (transport, budget, parsing,
      tag matching, Post building).

Best of three runs each; ``collector/fake`` is (b)/(a), the target is >= 0.7.
Called from ``benchmarks/collect.py`` (``bench_open``), or on its own:
``.venv/bin/python -m benchmarks.collect_open``; the last line is JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
import httpx

from monitor.config import Config
from monitor.models import Cursor, StreamKey
from monitor.sources.hackernews import HackerNewsCollector, HackerNewsSource
from monitor.sources.http import HttpClient
from monitor.sources.lemmy import LemmyCollector, LemmySource
from monitor.sources.misskey import MisskeyCollector, MisskeySource
from monitor.sources.rss import RssCollector, RssSource
from monitor.sources.settings import HttpSettings
from tests.fakes.data import World
from tests.fakes.hackernews import HackerNewsWorld, start_hackernews_fake
from tests.fakes.lemmy import LemmyWorld, start_lemmy_fake
from tests.fakes.misskey import MisskeyWorld, start_misskey_fake
from tests.fakes.rss import FeedWorld, start_rss_fake

BENCH_HTTP = HttpSettings(contact="benchmark@example.org", per_host_min_interval=timedelta(0),
                          per_host_concurrency=4)


def _best(label: str, fn: Callable[[], tuple[int, float]], expected: int, repeat: int = 3
          ) -> float:
    """Best of *repeat*; each run times itself from its client being ready (creating a
    client loads the TLS trust store, ~70 ms, which is neither side's collecting)."""
    best = float("inf")
    for _ in range(repeat):
        got, took = fn()
        best = min(best, took)
        if got != expected:
            raise SystemExit(f"{label}: pulled {got} posts, expected {expected}")
    rate = expected / best
    print(f"{label:<52} {expected:>6} posts in {best:6.2f} s = {rate:9.0f} posts/s "
          f"(best of {repeat})")
    return rate


async def _collect(source: Any, stream: StreamKey, cursor: Cursor | None
                   ) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum([len(b.posts) async for b in source.poll(stream, cursor)])
    return count, time.perf_counter() - started


def _pair(name: str, bare: Callable[[], tuple[int, float]],
          ours: Callable[[], tuple[int, float]], n: int
          ) -> dict[str, float]:
    raw = _best(f"(a) {name} fake bare rate", bare, n)
    got = _best(f"(b) {name} collector", ours, n)
    print(f"{name}: collector/fake {got / raw:.2f}x (target >= 0.7)")
    return {f"{name}_posts_s_fake": round(raw, 1), f"{name}_posts_s_collector": round(got, 1),
            f"{name}_ratio_vs_fake": round(got / raw, 3)}


def bench_misskey(n: int) -> dict[str, float]:
    world = MisskeyWorld(seed=1, count=0)
    start = datetime.now(UTC) - timedelta(hours=6)
    for i in range(n):
        world.add(("metoo",), instances=("a",), created_at=start + timedelta(seconds=i * 3),
                  renoted=False)
    fake = start_misskey_fake(world, "a")

    async def bare() -> tuple[int, float]:
        count, since = 0, "0"
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            while True:
                page = (await client.post(f"{fake.url}/api/notes/search-by-tag", json={
                    "tag": "metoo", "limit": 100, "sinceId": since})).json()
                if not page:
                    return count, time.perf_counter() - started
                count += len(page)
                since = max(note["id"] for note in page)

    async def ours() -> tuple[int, float]:
        async with HttpClient(BENCH_HTTP) as http:
            source = MisskeyCollector(MisskeySource(type="misskey", instances=[fake.url]),
                                      Config(), http)
            stream = StreamKey("misskey", fake.host, "metoo")
            return await _collect(source, stream, Cursor("misskey", stream.name, "0"))

    try:
        return _pair("misskey", lambda: asyncio.run(bare()), lambda: asyncio.run(ours()), n)
    finally:
        fake.stop()


def bench_lemmy(n: int) -> dict[str, float]:
    world = LemmyWorld(seed=1, count=0, decoys=0)
    start = datetime.now(UTC) - timedelta(hours=6)
    for i in range(n):
        world.add(("metoo",), instances=("a",), created_at=start + timedelta(seconds=i * 3))
    fake = start_lemmy_fake(world, "a")

    async def bare() -> tuple[int, float]:
        count, page = 0, 1
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            while True:
                views = (await client.get(f"{fake.url}/api/v3/search", params={
                    "q": "metoo", "type_": "Posts", "sort": "New", "page": page,
                    "limit": 50})).json()["posts"]
                if not views:
                    return count, time.perf_counter() - started
                count += len(views)
                page += 1

    async def ours() -> tuple[int, float]:
        async with HttpClient(BENCH_HTTP) as http:
            source = LemmyCollector(LemmySource(type="lemmy", instances=[fake.url],
                                                backfill_pages=10_000), Config(), http)
            return await _collect(source, StreamKey("lemmy", fake.host, "metoo"), None)

    try:
        return _pair("lemmy", lambda: asyncio.run(bare()), lambda: asyncio.run(ours()), n)
    finally:
        fake.stop()


def bench_hackernews(n: int) -> dict[str, float]:
    world = HackerNewsWorld(seed=1, count=0)
    world.bulk(n, datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6), 5 * 3600)
    fake = start_hackernews_fake(world)
    low = int((datetime.now(UTC) - timedelta(days=1)).timestamp())

    async def bare() -> tuple[int, float]:
        count, page, pages = 0, 0, 1
        high = int(time.time())
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            while page < pages:
                data = (await client.get(f"{fake.api}/search_by_date", params={
                    "query": "metoo", "tags": "(story,comment)", "hitsPerPage": 100,
                    "numericFilters": f"created_at_i>{low},created_at_i<={high}",
                    "page": page})).json()
                count += len(data["hits"])
                pages, page = data["nbPages"], page + 1
            return count, time.perf_counter() - started

    async def ours() -> tuple[int, float]:
        async with HttpClient(BENCH_HTTP) as http:
            source = HackerNewsCollector(HackerNewsSource(type="hackernews", api=fake.api,
                                                          hits_per_page=100), Config(), http)
            return await _collect(source, StreamKey("hackernews", fake.host, "metoo"), None)

    try:
        return _pair("hackernews", lambda: asyncio.run(bare()), lambda: asyncio.run(ours()), n)
    finally:
        fake.stop()


def bench_rss(n: int) -> dict[str, float]:
    feeds = FeedWorld(seed=1, count=0)
    start = datetime.now(UTC) - timedelta(hours=6)
    for i in range(n):
        feeds.add(("metoo",), created_at=start + timedelta(seconds=i * 3))
    fake = start_rss_fake(World(seed=1, mastodon_posts=0, bluesky_posts=0), feeds)
    url = f"{fake.url}/feeds/blog.atom"

    async def bare() -> tuple[int, float]:
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            body = (await client.get(url)).content
            return len(feedparser.parse(body).entries), time.perf_counter() - started

    async def ours() -> tuple[int, float, float]:
        async with HttpClient(BENCH_HTTP) as http:
            source = RssCollector(RssSource(type="rss", feeds=[url]), Config(), http)
            [stream] = source.streams()
            started = time.perf_counter()
            batches = [b async for b in source.poll(stream, None)]
            took = time.perf_counter() - started
            started = time.perf_counter()
            unchanged = [b async for b in source.poll(stream, batches[-1].cursor)]
            assert unchanged == []
            return (sum(len(b.posts) for b in batches), took,
                    time.perf_counter() - started)

    try:
        out = _pair("rss", lambda: asyncio.run(bare()), lambda: asyncio.run(ours())[:2], n)
        took = min(asyncio.run(ours())[2] for _ in range(3))
        print(f"rss: an unchanged feed (conditional GET, 304) costs {took * 1000:.1f} ms "
              "per poll")
        out["rss_ms_per_304_poll"] = round(took * 1000, 2)
        return out
    finally:
        fake.stop()


def bench_open(n: int = 4000) -> dict[str, float]:
    result: dict[str, float] = {}
    result.update(bench_misskey(n))
    result.update(bench_lemmy(n))
    result.update(bench_hackernews(min(n, 1000)))  # one window under the 1,000-hit cap
    result.update(bench_rss(min(n, 500)))
    return result


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    print(json.dumps(bench_open(size)))
