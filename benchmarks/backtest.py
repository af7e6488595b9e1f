"""How long `monitor backtest` takes: 90 days, four tags, every rule in config.yaml.

    python -m benchmarks.backtest [--days 90] [--naive-hours 6]

Builds a SQLite store of four synthetic tags (seasonal volume, tone with a
few shifts, co-tags with one emerging story, a volume surge) covering the
replayed span plus the rules' look-back, then times
:func:`monitor.detect.backtest.backtest` over ``--days`` with config.yaml's
rules. The reference is the naive replay (``evaluate_rule`` at every instant,
:func:`monitor.detect.backtest.naive_replay`): it is measured on
``--naive-hours`` of the same store and EXTRAPOLATED to the full span (per
instant cost × instants), at the same 5-minute instants and at the one-minute
steps of a scheduler. The two replays are also compared on the measured span.
Last line: one flat JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.detect.backtest import backtest, instants, naive_replay
from monitor.store.db import make_engine, migrate
from monitor.store.schema import post_tags, posts, tag_buckets

TAGS = ["metoo", "timesup", "climate", "ukraine"]
BUCKET = timedelta(minutes=5)
LOOKBACK = timedelta(days=15)


def _usual(at: datetime, base: float) -> float:
    hour = at.hour + at.minute / 60
    daily = 0.25 + 0.75 * (0.5 - 0.5 * math.cos(2 * math.pi * (hour - 8) / 24)) ** 2
    return base * daily * (0.7 if at.weekday() >= 5 else 1.0)


def build(engine: Engine, start: datetime, end: datetime, seed: int = 1) -> int:
    """Seed the store; returns the number of posts (with tags) written."""
    rng = random.Random(seed)
    buckets = int((end - start) / BUCKET)
    surge = start + (end - start) * 0.6
    story = start + (end - start) * 0.8
    post_id = 0
    for t, tag in enumerate(TAGS):
        base = (40.0, 12.0, 5.0, 2.0)[t]
        rows, post_rows, tag_rows = [], [], []
        tone = 0.1
        for i in range(buckets):
            at = start + i * BUCKET
            lam = _usual(at, base) * (6.0 if t == 0 and surge <= at < surge + timedelta(hours=2)
                                      else 1.0)
            n = max(0, round(rng.gauss(lam, math.sqrt(lam))))
            scored = n
            tone = 0.9 * tone + 0.1 * (0.1 + rng.gauss(0, 0.05))
            shift = -0.35 if t == 1 and story <= at < story + timedelta(hours=3) else 0.0
            values = [max(-1.0, min(1.0, rng.gauss(tone + shift, 0.45))) for _ in range(scored)]
            rows.append({"tag": tag, "bucket_start": at, "posts": n, "scored": scored,
                         "compound_sum": sum(values), "compound_sq_sum": sum(v * v for v in values),
                         "positive": 0, "neutral": 0, "negative": 0})
            # one post per bucket carries the co-tags (post_tags is what the co-tag rule reads)
            if n:
                post_id += 1
                post_rows.append({"id": post_id, "platform": "mastodon", "key": f"p{post_id}",
                                  "created_at": at, "collected_at": at, "is_repost": False,
                                  "sensitive": False})
                others = [tag]
                if rng.random() < 0.2:
                    others.append(rng.choice(["news", "politics", "video", "live"]))
                if t == 2 and story <= at < story + timedelta(hours=8) and rng.random() < 0.5:
                    others.append("newstory")
                tag_rows += [{"post_id": post_id, "tag": o, "created_at": at} for o in others]
        with engine.begin() as conn:
            for chunk in range(0, len(rows), 5000):
                conn.execute(tag_buckets.insert(), rows[chunk:chunk + 5000])
            for chunk in range(0, len(post_rows), 5000):
                conn.execute(posts.insert(), post_rows[chunk:chunk + 5000])
            for chunk in range(0, len(tag_rows), 5000):
                conn.execute(post_tags.insert(), tag_rows[chunk:chunk + 5000])
    return post_id


def _episodes(result: Any) -> list[tuple[Any, ...]]:
    return [(a.rule, sorted(a.labels.items()), a.fired_at, a.resolved_at) for a in result.alerts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--naive-hours", type=float, default=6.0)
    args = parser.parse_args()
    rules = yaml.safe_load(Path("config.yaml").read_text(encoding="utf-8"))["rules"]
    until = datetime(2026, 4, 1, tzinfo=UTC)
    since = until - timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/backtest.db"
        engine = make_engine(url)
        migrate(engine)
        t0 = time.perf_counter()
        n_posts = build(engine, since - LOOKBACK, until)
        print(f"store: {len(TAGS)} tags, {args.days}d + {LOOKBACK.days}d look-back, "
              f"{n_posts:,} posts with tags ({time.perf_counter() - t0:.0f}s to build)")
        cfg = parse_config({"hashtags": TAGS, "database": {"url": url}, "rules": rules}, env={})
        print("rules: " + ", ".join(f"{r.name} ({r.kind})" for r in cfg.rules))
        t0 = time.perf_counter()
        result = backtest(engine, cfg, since, until)
        fast = time.perf_counter() - t0
        steps = len(instants(since, until))
        print(f"backtest: {args.days} days, {steps:,} instants x {len(TAGS)} tags: {fast:.1f}s, "
              f"{len(result.alerts)} alerts; skipped: {', '.join(result.skipped) or 'none'}")
        for row in result.summary():
            print(f"  {row['rule']:<16} #{row['tag']:<8} {row['alerts']:>3} alerts "
                  f"({row['per_week']:.2f}/week)")
        # the reference, on a short span ending where an event is
        short_until = since + (until - since) * 0.8 + timedelta(hours=2)
        short_since = short_until - timedelta(hours=args.naive_hours)
        t0 = time.perf_counter()
        slow = naive_replay(engine, cfg, short_since, short_until)
        naive_short = time.perf_counter() - t0
        short_steps = len(instants(short_since, short_until))
        per_instant = naive_short / short_steps
        same = _episodes(slow) == _episodes(backtest(engine, cfg, short_since, short_until))
        naive_5m = per_instant * steps
        naive_1m = naive_5m * 5
        print(f"naive replay measured on {args.naive_hours:g}h ({short_steps} instants): "
              f"{naive_short:.1f}s, {per_instant * 1000:.0f} ms per instant; same alerts as the "
              f"backtest on that span: {same}")
        print(f"naive replay EXTRAPOLATED to {args.days} days: {naive_5m / 60:.0f} min at 5-minute "
              f"instants ({naive_5m / fast:.0f}x the backtest), {naive_1m / 60:.0f} min at "
              f"one-minute steps ({naive_1m / fast:.0f}x)")
        engine.dispose()
    print(json.dumps({
        "backtest_seconds": round(fast, 2), "days": args.days, "tags": len(TAGS),
        "rules": len(cfg.rules), "alerts": len(result.alerts),
        "naive_ms_per_instant": round(per_instant * 1000, 1),
        "naive_seconds_extrapolated_5m": round(naive_5m, 0),
        "naive_seconds_extrapolated_1m": round(naive_1m, 0),
        "ratio_naive_5m": round(naive_5m / fast, 1), "ratio_naive_1m": round(naive_1m / fast, 1),
        "same_alerts_on_short_span": int(same),
    }))


if __name__ == "__main__":
    main()
