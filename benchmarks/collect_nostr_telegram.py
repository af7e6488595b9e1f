"""Nostr and Telegram parts of ``benchmarks.collect`` (called from its ``main``).

Nostr: the fake relay runs in its own process and answers a subscription with
``--nostr-events`` pre-built EVENT frames (1% carrying a followed tag, really
signed) as fast as it can, then EOSE. Printed in events/s:

  (g) the fake's own emit rate: a bare websockets client sends the REQ and
      receives every frame until EOSE, doing nothing else (the reference);
  (h) the NostrCollector: dedup by id, the raw-bytes pre-filter, decoding,
      id + schnorr verification of every candidate, batching, until EOSE.

Telegram: one fake channel with ``--telegram-messages`` tagged messages, 20 per
page. Printed in posts/s:

  (i) the fake's bare rate: httpx follows ``data-before`` page by page and only
      reads the HTML (the reference);
  (j) the TelegramCollector's first-run backfill through the shared client:
      parsing every page with selectolax into Posts.

Each figure is the best of three runs in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from monitor.config import Config
from monitor.models import Batch, StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.settings import HttpSettings

BENCH_HTTP = HttpSettings(contact="benchmark@example.org", per_host_min_interval=timedelta(0),
                          per_host_concurrency=4)
ROOT = Path(__file__).resolve().parent.parent


def _start_relay(events: int, match: float) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.nostr", "--firehose",
                             str(events), "--match", str(match)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the fake Nostr relay did not start")
    return proc, json.loads(line)


async def _raw_relay(url: str) -> float:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_queue=256, max_size=2**22) as ws:
        started = time.perf_counter()
        await ws.send('["REQ","bench",{"kinds":[1],"#t":["metoo"]}]')
        while not (await ws.recv(decode=False)).startswith(b'["EOSE"'):
            pass
        return time.perf_counter() - started


async def _nostr_consume(url: str) -> tuple[float, int]:
    from monitor.sources.nostr import NostrSource, nostr_collectors
    from monitor.sources.ratelimit import HostBudgets

    config = Config()
    cfg = NostrSource(type="nostr", relays=[url], batch_size=500, limit=5000,
                      batch_interval=timedelta(milliseconds=100))
    col = nostr_collectors(cfg, config, HostBudgets(config.http))[0]
    kept = 0

    async def sink(batch: Batch) -> None:
        nonlocal kept
        kept += len(batch.posts)

    started = time.perf_counter()
    task = asyncio.create_task(col.run(None, sink))
    while col.eose == 0:  # EOSE flushes the batch in hand before the counter moves on
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    wall = time.perf_counter() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return wall, kept


def bench_nostr(events: int = 100_000, match: float = 0.01, rounds: int = 3) -> dict[str, float]:
    proc, info = _start_relay(events, match)
    try:
        raw = min(asyncio.run(_raw_relay(info["url"])) for _ in range(rounds))
        wall, kept = min(asyncio.run(_nostr_consume(info["url"])) for _ in range(rounds))
    finally:
        proc.kill()
        proc.wait()
    if kept != info["matching"]:
        raise SystemExit(f"nostr: kept {kept} notes, the relay sent {info['matching']} "
                         "matching ones")
    emit, rate = events / raw, events / wall
    print(f"{'(g) fake Nostr relay emit rate (bare websocket client)':<52} {events:>6} events "
          f"in {raw:6.2f} s = {emit:9.0f} events/s (best of {rounds})")
    print(f"{'(h) NostrCollector, ' + format(match, '.0%') + ' matching, verified':<52} "
          f"{events:>6} events in {wall:6.2f} s = {rate:9.0f} events/s ({kept} notes kept)")
    print(f"nostr collector/fake: {rate / emit:.2f}x of the relay's own emit rate; target >= "
          f"5000 events/s: {'met' if rate >= 5000 else 'NOT met'}")
    return {"nostr_events_s_fake": round(emit, 1), "nostr_events_s_collector": round(rate, 1),
            "nostr_ratio_collector_vs_fake": round(rate / emit, 3), "nostr_notes_kept": kept,
            "nostr_match_share": match}


_BEFORE = re.compile(r'data-before="(\d+)"')


async def _raw_telegram(base: str) -> int:
    count, before = 0, None
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(f"{base}/s/benchchan",
                                        params={"before": before} if before else None)
            page = response.text
            count += page.count('class="tgme_widget_message ')
            match = _BEFORE.search(page)
            if match is None:
                return count
            before = match.group(1)


async def _telegram_pull(base: str) -> int:
    from monitor.sources.telegram import TelegramCollector, TelegramSource

    cfg = TelegramSource(type="telegram", channels=["benchchan"], base_url=base,
                         backfill_pages=1000)
    count = 0
    async with HttpClient(BENCH_HTTP) as http:
        col = TelegramCollector(cfg, Config(), http)
        async for batch in col.poll(StreamKey("telegram", "benchchan", "*"), None):
            count += len(batch.posts)
    return count


def bench_telegram(messages: int = 2000, rounds: int = 3) -> dict[str, float]:
    from benchmarks.collect import _timed
    from tests.fakes.telegram import TelegramWorld, start_telegram_fake

    world = TelegramWorld(channels=(), per_channel=0)
    for _ in range(messages):
        world.add("benchchan", ("metoo",))
    fake = start_telegram_fake(world)
    try:
        raw = _timed("(i) fake t.me preview rate (bare httpx, before= paging)",
                     lambda: asyncio.run(_raw_telegram(fake.url)), messages, rounds)
        pulled = _timed("(j) TelegramCollector first-run backfill",
                        lambda: asyncio.run(_telegram_pull(fake.url)), messages, rounds)
    finally:
        fake.stop()
    print(f"telegram collector/fake: {pulled / raw:.2f}x of the fake's own serving rate "
          f"(target >= 0.7x: {'met' if pulled / raw >= 0.7 else 'NOT met'})")
    return {"telegram_posts_s_fake": round(raw, 1), "telegram_posts_s_collector": round(pulled, 1),
            "telegram_ratio_collector_vs_fake": round(pulled / raw, 3)}
