"""Collection throughput against the fake platforms on 127.0.0.1.

Mastodon part: one fake instance serves ``--mastodon-posts`` statuses of one
tag with no artificial delay. Printed, in posts/s:

  (a) the fake's own serving rate: a bare ``httpx.AsyncClient`` pages through
      the timeline with ``min_id`` and only decodes the JSON (the reference:
      nothing can pull faster than the fake serves);
  (b) the Mastodon collector catching up from an old cursor (``min_id`` page
      by page, 40 per page): retries, budget, rate-limit bookkeeping, parsing
      every status into a Post;
  (c) the collector's first-run backfill (``max_id`` via the Link header).

Each figure is the best of three runs against the same fake in the same process.

The ratio (b)/(a) says how much of the fake's rate the collector keeps.
Functions ``bench_*`` each return flat numeric results so other parts (the
Jetstream consumer) can be added to ``main``. The last line printed is one
JSON object.

Run: ``.venv/bin/python -m benchmarks.collect [--mastodon-posts 4000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from monitor.config import Config
from monitor.models import Cursor, StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.mastodon import MastodonCollector
from monitor.sources.settings import HttpSettings, MastodonSource
from tests.fakes.data import World
from tests.fakes.mastodon import start_mastodon_fake

# No pacing: measure the client, not the politeness settings.
BENCH_HTTP = HttpSettings(contact="benchmark@example.org", per_host_min_interval=timedelta(0),
                          per_host_concurrency=4)


def _world_with(posts: int) -> World:
    world = World(seed=1, mastodon_posts=0, bluesky_posts=0)
    start = datetime.now(UTC) - timedelta(hours=6)
    for i in range(posts):
        world.add_mastodon_post(["metoo"], instances=("a",),
                                created_at=start + timedelta(seconds=i * 3))
    return world


async def _raw_pull(url: str) -> int:
    """Reference: page through with min_id using a bare client, decode only."""
    count, since = 0, "0"
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(url, params={"min_id": since, "limit": 40})
            page = response.json()
            if not page:
                return count
            count += len(page)
            since = max((s["id"] for s in page), key=lambda i: (len(i), i))


async def _collector_pull(base: str, host: str, cursor: str | None) -> int:
    cfg = MastodonSource(type="mastodon", instances=[base], backfill_pages=10_000)
    count = 0
    async with HttpClient(BENCH_HTTP) as http:
        source = MastodonCollector(cfg, Config(), http)
        stream = StreamKey("mastodon", host, "metoo")
        saved = None if cursor is None else Cursor("mastodon", stream.name, cursor)
        async for batch in source.poll(stream, saved):
            count += len(batch.posts)
    return count


def _timed(label: str, fn: Callable[[], int], expected: int, repeat: int = 3) -> float:
    """Best of *repeat* runs (the machine may be shared; the best run is the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        got = fn()
        best = min(best, time.perf_counter() - started)
        if got != expected:
            raise SystemExit(f"{label}: pulled {got} posts, expected {expected}")
    rate = expected / best
    print(f"{label:<52} {expected:>6} posts in {best:6.2f} s = {rate:9.0f} posts/s "
          f"(best of {repeat})")
    return rate


def bench_mastodon(posts: int = 4000) -> dict[str, float]:
    """posts/s the Mastodon collector pulls from one fake instance with no delay."""
    world = _world_with(posts)
    fake = start_mastodon_fake(world, "a")
    try:
        url = f"{fake.url}/api/v1/timelines/tag/metoo"
        raw = _timed("(a) fake serving rate (bare httpx, min_id paging)",
                     lambda: asyncio.run(_raw_pull(url)), posts)
        catch_up = _timed("(b) MastodonCollector catch-up (min_id)",
                          lambda: asyncio.run(_collector_pull(fake.url, fake.host, "0")), posts)
        backfill = _timed("(c) MastodonCollector first-run backfill (max_id)",
                          lambda: asyncio.run(_collector_pull(fake.url, fake.host, None)), posts)
    finally:
        fake.stop()
    ratio = catch_up / raw
    print(f"collector/fake: catch-up {ratio:.2f}x, backfill {backfill / raw:.2f}x of the "
          "fake's own serving rate")
    return {
        "mastodon_posts_s_fake": round(raw, 1),
        "mastodon_posts_s_catchup": round(catch_up, 1),
        "mastodon_posts_s_backfill": round(backfill, 1),
        "mastodon_ratio_catchup_vs_fake": round(ratio, 3),
        "mastodon_ratio_backfill_vs_fake": round(backfill / raw, 3),
    }


# ---------------------------------------------------------------------------- Jetstream


def _start_firehose(events: int, match: float) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The fake Jetstream in its own process (its own core), serving *events* pre-built frames
    to every connection as fast as it can."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.jetstream", "--firehose", str(events),
         "--match", str(match)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the fake Jetstream did not start")
    return proc, json.loads(line)


async def _raw_receive(url: str, frames: int) -> float:
    """Reference: a bare websockets client that receives every frame and does nothing."""
    from websockets.asyncio.client import connect

    async with connect(url + "?wantedCollections=app.bsky.feed.post", compression=None,
                       max_queue=256, max_size=2**22) as ws:
        started = time.perf_counter()
        for _ in range(frames):
            await ws.recv(decode=False)
        return time.perf_counter() - started


async def _consume(url: str, last_time_us: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, posts kept) for the JetstreamCollector to reach the last
    frame's cursor; the sink only counts, so this is the consumer alone."""
    from monitor.models import Batch
    from monitor.sources.jetstream import JetstreamCollector
    from monitor.sources.ratelimit import HostBudgets
    from monitor.sources.settings import JetstreamSource

    cfg = JetstreamSource(type="jetstream", hosts=[url], batch_size=500,
                          batch_interval=timedelta(milliseconds=100))
    config = Config()
    collector = JetstreamCollector(cfg, config, HostBudgets(config.http))
    kept = 0
    done = asyncio.Event()

    async def sink(batch: Batch) -> None:
        nonlocal kept
        kept += len(batch.posts)
        if batch.cursor is not None and int(batch.cursor.value) >= last_time_us:
            done.set()

    wall, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(collector.run(None, sink))
    await asyncio.wait_for(done.wait(), 600)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return wall, cpu, kept


async def _through_service(url: str, last_time_us: int, db_dir: str) -> tuple[float, int]:
    """(wall seconds, posts stored) for the whole service path: Jetstream → enrich →
    write_batch on SQLite, until the saved cursor is the last frame's."""
    from sqlalchemy import func, select

    from monitor.service import Service
    from monitor.store.db import make_engine, migrate
    from monitor.store.schema import cursors, posts

    config = Config(database={"url": f"sqlite:///{db_dir}/bench.db"},
                    privacy={"hash_secret": "b" * 32},
                    sources=[{"type": "jetstream", "hosts": [url], "batch_size": 500,
                              "batch_interval": "0.1s"}])
    engine = make_engine(config.database.url)
    migrate(engine)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(Service(config, engine).run(stop))

    def progress() -> tuple[int, str | None]:
        with engine.connect() as conn:
            return (conn.execute(select(func.count()).select_from(posts)).scalar_one(),
                    conn.execute(select(cursors.c.value)).scalar())

    while True:
        stored, cursor = await asyncio.to_thread(progress)
        if cursor is not None and int(cursor) >= last_time_us:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - started
    stop.set()
    await task
    engine.dispose()
    return wall, stored


def bench_jetstream(events: int = 100_000, match: float = 0.01, rounds: int = 3
                    ) -> dict[str, float]:
    """events/s the Jetstream consumer filters when the fake emits as fast as it can
    (best of *rounds*)."""
    import tempfile

    proc, info = _start_firehose(events, match)
    try:
        # best of `rounds`: the machine is shared, the fastest run is the least disturbed
        raw = min(asyncio.run(_raw_receive(info["url"], info["frames"])) for _ in range(rounds))
        wall, cpu, kept = min(asyncio.run(_consume(info["url"], info["last_time_us"]))
                              for _ in range(rounds))
        runs = []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(asyncio.run(_through_service(info["url"], info["last_time_us"],
                                                         tmp)))
        svc_wall, stored = min(runs)
    finally:
        proc.kill()
        proc.wait()
    if stored != info["matching"]:
        raise SystemExit(f"jetstream via the service: stored {stored} posts, the fake sent "
                         f"{info['matching']} matching ones")
    if kept != info["matching"]:
        raise SystemExit(f"jetstream: kept {kept} posts, the fake sent {info['matching']} "
                         "matching ones")
    emit_rate, rate, cpu_rate = events / raw, events / wall, events / cpu
    mb = info["bytes"] / 1e6
    print(f"{'(d) fake Jetstream emit rate (bare websocket client)':<52} {events:>6} events in "
          f"{raw:6.2f} s = {emit_rate:9.0f} events/s ({mb / raw:.1f} MB/s, best of {rounds})")
    print(f"{'(e) JetstreamCollector, ' + format(match, '.0%') + ' matching':<52} {events:>6} "
          f"events in {wall:6.2f} s = {rate:9.0f} events/s ({kept} posts kept)")
    print(f"{'    per CPU-second of the consumer (one core)':<52} {'':>6} {'':>9}   "
          f"{'':>6}   {cpu_rate:9.0f} events/s")
    svc_rate = events / svc_wall
    print(f"{'(f) the service: Jetstream → enrich → SQLite':<52} {events:>6} events in "
          f"{svc_wall:6.2f} s = {svc_rate:9.0f} events/s ({stored} posts stored)")
    print(f"consumer/fake: {rate / emit_rate:.2f}x of the fake's own emit rate "
          f"(service path {svc_rate / emit_rate:.2f}x); target >= 5000 events/s: "
          f"{'met' if min(rate, svc_rate) >= 5000 else 'NOT met'}")
    return {
        "jetstream_events_s_fake": round(emit_rate, 1),
        "jetstream_events_s_consumer": round(rate, 1),
        "jetstream_events_s_per_cpu_s": round(cpu_rate, 1),
        "jetstream_ratio_consumer_vs_fake": round(rate / emit_rate, 3),
        "jetstream_events_s_service_sqlite": round(svc_rate, 1),
        "jetstream_ratio_service_vs_fake": round(svc_rate / emit_rate, 3),
        "jetstream_posts_kept": kept,
        "jetstream_match_share": match,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collect")
    parser.add_argument("--mastodon-posts", type=int, default=4000)
    parser.add_argument("--jetstream-events", type=int, default=100_000)
    parser.add_argument("--jetstream-match", type=float, default=0.01)
    parser.add_argument("--nostr-events", type=int, default=100_000)
    parser.add_argument("--telegram-messages", type=int, default=2000)
    parser.add_argument("--open-posts", type=int, default=4000,
                        help="posts per open-platform fake (Misskey, Lemmy; HN <= 1000, RSS 500)")
    parser.add_argument("--keyed-posts", type=int, default=4000,
                        help="posts per Reddit and X fake")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    result.update(bench_mastodon(args.mastodon_posts))
    result.update(bench_jetstream(args.jetstream_events, args.jetstream_match))
    from benchmarks.collect_nostr_telegram import bench_nostr, bench_telegram

    result.update(bench_nostr(args.nostr_events, args.jetstream_match))
    result.update(bench_telegram(args.telegram_messages))
    # Misskey, Lemmy, Hacker News, RSS/Atom: benchmarks/collect_open.py
    from benchmarks.collect_open import bench_open

    result.update(bench_open(args.open_posts))
    # Reddit and X (behind the user's credentials): benchmarks/collect_keyed.py
    from benchmarks.collect_keyed import bench_keyed

    result.update(bench_keyed(args.keyed_posts))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
