"""Read-side latency: trends and relate from the 5-minute rollups vs the same answers from raw.

Seeds, on a fresh SQLite file and a fresh PostgreSQL schema (dropped afterwards):

- ``tag_buckets``: 10 tags × 1 year of 5-minute buckets (1,051,200 rows), a daily
  rhythm and bursts, every bucket non-empty;
- raw ``posts`` + ``post_tags`` for the two tags the queries read (``metoo`` and
  ``notallmen``) over the 90 days the queries cover — ``--rate`` (default 20)
  posts per 5 minutes for metoo on average, 0.6× that for notallmen echoing
  metoo 3 h later, 5 % of notallmen posts also tagged metoo — and the buckets of those
  two tags in that window are *computed from those posts*, so the rollup and the
  raw answers must agree exactly (checked before timing);
- ``tag_pair_buckets`` built from those posts by the very INSERT … SELECT the
  migration ``0003_tag_pairs`` backfills existing databases with (timed as
  ``pair_backfill_s``).

Timed (p50/p95 over repeated runs, warm cache):

- ``trends``: ``series(metoo, 90 days, step 1h)`` (2,160 points) vs the same
  GROUP BY over posts ⋈ post_tags;
- ``relate``: the whole ``relate(metoo, notallmen, 90 days)`` call — both hourly
  volume series, prewhitening, cross-correlation over ±48 h, the share of posts
  carrying both and each tag's tone with and without the other, all from the
  rollups (``tag_buckets`` and ``tag_pair_buckets``) — vs the same answer from
  raw posts alone (raw hourly series, and every post of each tag joined to
  ``posts`` for the with/without split). Both answers are checked equal first.

Targets: p95 <= 50 ms and >= 20x faster than raw. The ratio grows with posts per
bucket (raw work is per post, rollup work per bucket): at ``--rate 3`` expect
only a few x, so the rate is printed with the figures.
Run: ``.venv/bin/python -m benchmarks.query [--repeat 30]``. The last line is one
JSON object of flat numeric keys.

Raw-size scaling (issue 14): ``--sizes 1000000,5000000`` runs only this, on
PostgreSQL, where ``posts`` is partitioned by month. One schema per size, each
with the same rollups and checked raw posts as above, then grown to that many
``posts`` (with their ``post_keys`` and ``post_tags`` rows) by INSERT … SELECT
generate_series: filler posts of the other tags spread over the rollups' year.
Both answers are checked equal to raw again at each size, then ``trends`` and
``relate`` from the rollups are timed in alternating rounds (background load
falls on every size alike). Reported: p50/p95 per query per size, the p95 growth
against the smallest size (target <= 1.2: the rollups do not read raw posts),
and the raw trend from posts ⋈ post_tags as the reference that does grow.
Takes ~20 min for 1 M + 5 M on a busy 2-core machine (building 5 M is most of it).
Use ``--repeat 100``: with 30 samples the p95 is one sample, and on a loaded
machine one outlier moved it by 27 % while the p50 went the other way.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, case, create_engine, func, select, text

from monitor.analyse.relate import cross_correlation, prepare, relate, tone_from_posts
from monitor.store.db import MIGRATIONS_DIR, make_engine, migrate
from monitor.store.partitions import ensure_partitions
from monitor.store.queries import SeriesPoint, _bucket_epoch, align_range, series
from monitor.store.schema import post_tags, posts

PG_URL = os.environ.get("MONITOR_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TAGS = ["metoo", "notallmen", "howiwillchange", "ididit", "timesup", "believewomen",
        "yesallwomen", "himtoo", "churchtoo", "balancetonporc"]
BUCKET = 300
PER_DAY = 86400 // BUCKET
RAW_DAYS = 90
SEED = 20171015


# ------------------------------------------------------------------------------- data

def _season(n: int, rng: np.random.Generator, mean: float) -> np.ndarray:
    """Intensity per 5-minute bucket: daily and weekly rhythm plus decaying bursts."""
    t = np.arange(n)
    daily = 1 + 0.6 * np.sin(2 * np.pi * (t % PER_DAY) / PER_DAY - 1.2)
    weekly = 1 + 0.15 * np.sin(2 * np.pi * t / (7 * PER_DAY))
    bursts = np.zeros(n)
    idx = rng.choice(n - 100, max(4, n // 3000), replace=False)
    bursts[idx] = rng.uniform(2, 8, idx.size)
    bursts = np.convolve(bursts, np.exp(-np.arange(36) / 10.0))[:n]
    return np.asarray(mean * (daily * weekly + bursts))


def _stamps(epochs: np.ndarray) -> list[str]:
    """UTC epoch seconds → 'YYYY-MM-DD HH:MM:SS.ffffff' (how SQLite stores our timestamps)."""
    text_ = np.datetime_as_string(epochs.astype("datetime64[s]").astype("datetime64[us]"),
                                  unit="us")
    return [s.replace("T", " ") for s in text_.tolist()]


class Dataset:
    """Buckets for all tags over a year; raw posts for two tags over the last 90 days.

    *rate* is the mean number of posts per tag per 5-minute bucket.
    """

    def __init__(self, end: datetime, seed: int, rate: float) -> None:
        rng = np.random.default_rng(seed)
        self.end = end
        n = 365 * PER_DAY
        self.first = int(end.timestamp()) - n * BUCKET
        raw_first = int(end.timestamp()) - RAW_DAYS * PER_DAY * BUCKET
        epochs = self.first + BUCKET * np.arange(n, dtype=np.int64)
        raw_mask = epochs >= raw_first
        window = epochs[raw_mask]
        m = window.size
        # metoo, and notallmen answering metoo's rhythm and bursts 3 hours (36 buckets) later
        lam = _season(m, rng, rate)
        counts = {"metoo": rng.poisson(lam), "notallmen": rng.poisson(0.6 * np.roll(lam, 36))}
        ids, keys, created, compound, tag_rows = [], [], [], [], []
        next_id = 1
        agg: dict[str, np.ndarray] = {}
        for tag, c in counts.items():
            k = int(c.sum())
            bucket_idx = np.repeat(np.arange(m), c)
            at = window[bucket_idx] + rng.integers(0, BUCKET, k)
            comp = np.clip(rng.normal(0.1 if tag == "metoo" else -0.15, 0.45, k), -1, 1)
            unscored = rng.random(k) < 0.1
            also_metoo = (rng.random(k) < 0.05) if tag == "notallmen" else np.zeros(k, bool)
            post_ids = np.arange(next_id, next_id + k)
            next_id += k
            stamps = _stamps(at)
            comp_list: list[float | None] = [None if u else float(v)
                                             for u, v in zip(unscored, comp, strict=True)]
            ids += post_ids.tolist()
            keys += [f"k{i}" for i in post_ids.tolist()]
            created += stamps
            compound += comp_list
            tag_rows += list(zip(post_ids.tolist(), [tag] * k, stamps, strict=True))
            extra = np.nonzero(also_metoo)[0]
            tag_rows += [(int(post_ids[i]), "metoo", stamps[i]) for i in extra]
            # rollups of exactly these posts: per (tag, bucket) sums
            scored_v = np.where(unscored, 0.0, comp)
            for t, sel in ((tag, np.arange(k)), ("metoo", extra)):
                b = bucket_idx[sel]
                cs = scored_v[sel]
                sc = (~unscored[sel]).astype(float)
                cols = np.vstack([
                    np.bincount(b, minlength=m).astype(float),
                    np.bincount(b, weights=sc, minlength=m),
                    np.bincount(b, weights=cs, minlength=m),
                    np.bincount(b, weights=cs * cs, minlength=m),
                    np.bincount(b, weights=sc * (cs >= 0.05), minlength=m),
                    np.bincount(b, weights=sc * ((cs > -0.05) & (cs < 0.05)), minlength=m),
                    np.bincount(b, weights=sc * (cs <= -0.05), minlength=m),
                ])
                agg[t] = agg[t] + cols if t in agg else cols
        self.posts = list(zip(ids, ["bench"] * len(ids), keys, created, created, compound,
                              strict=True))
        self.post_tags = tag_rows
        self.bucket_rows: list[tuple[Any, ...]] = []
        window_stamps = _stamps(window)
        for t, cols in agg.items():
            for i in np.nonzero(cols[0])[0].tolist():
                c = cols[:, i]
                self.bucket_rows.append((t, window_stamps[i], int(c[0]), int(c[1]), float(c[2]),
                                         float(c[3]), int(c[4]), int(c[5]), int(c[6])))
        all_stamps = _stamps(epochs)
        for tag in TAGS:
            c_all = rng.poisson(_season(n, rng, rate)) + 1
            s_all = rng.binomial(c_all, 0.9)
            mean = np.clip(rng.normal(0.0, 0.3, n), -1, 1)
            keep = ~raw_mask if tag in counts else np.ones(n, bool)
            for i in np.nonzero(keep)[0].tolist():
                c, sc, mu = int(c_all[i]), int(s_all[i]), float(mean[i])
                self.bucket_rows.append((tag, all_stamps[i], c, sc, mu * sc, mu * mu * sc,
                                         sc // 2, 0, sc - sc // 2))


# ------------------------------------------------------------------------------ seeding

def seed_sqlite(engine: Engine, data: Dataset) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.executemany(
            "INSERT INTO tag_buckets (tag, bucket_start, posts, scored, compound_sum, "
            "compound_sq_sum, positive, neutral, negative) VALUES (?,?,?,?,?,?,?,?,?)",
            data.bucket_rows)
        cur.executemany(
            "INSERT INTO posts (id, platform, key, created_at, collected_at, compound, "
            "is_repost, sensitive) VALUES (?,?,?,?,?,?,0,0)", data.posts)
        cur.executemany("INSERT INTO post_tags (post_id, tag, created_at) VALUES (?,?,?)",
                        data.post_tags)
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def seed_postgres(engine: Engine, data: Dataset) -> None:
    # posts are partitioned by month (0010): make the year's months, so the rows land
    # in them and not in the default partition
    ensure_partitions(engine, [datetime.fromtimestamp(data.first + d * 86400, UTC)
                               for d in range(0, 366, 10)], data.end)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy("COPY tag_buckets (tag, bucket_start, posts, scored, compound_sum, "  # type: ignore[attr-defined]
                      "compound_sq_sum, positive, neutral, negative) FROM STDIN") as copy:
            for row in data.bucket_rows:
                copy.write_row((row[0], row[1] + "+00", *row[2:]))
        with cur.copy("COPY posts (id, platform, key, created_at, collected_at, compound, "  # type: ignore[attr-defined]
                      "is_repost, sensitive) FROM STDIN") as copy:
            for row in data.posts:
                copy.write_row((*row[:3], row[3] + "+00", row[4] + "+00", row[5], False, False))
        with cur.copy("COPY post_tags (post_id, tag, created_at) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in data.post_tags:
                copy.write_row((row[0], row[1], row[2] + "+00"))
        # the dedupe gate of the partitioned posts, as the batch executor keeps it
        cur.execute("INSERT INTO post_keys (platform, key, id, created_at) "
                    "SELECT platform, key, id, created_at FROM posts")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def backfill_pairs(engine: Engine) -> None:
    """Fill tag_pair_buckets from the seeded posts with the migration's own backfill SQL."""
    path = MIGRATIONS_DIR / "versions" / "0003_tag_pairs.py"
    spec = importlib.util.spec_from_file_location("migration_0003_tag_pairs", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with engine.begin() as conn:
        conn.execute(text(migration._backfill(engine.dialect.name)))
        conn.execute(text("ANALYZE tag_pair_buckets" if engine.dialect.name == "postgresql"
                          else "ANALYZE"))


# ------------------------------------------------------------------------------- raw side

def series_from_raw(engine: Engine, tags: list[str], since: datetime, until: datetime,
                    step: timedelta) -> list[SeriesPoint]:
    """The same answer as queries.series, computed from posts ⋈ post_tags."""
    size = int(step.total_seconds())
    start, end = align_range(since, until, size)
    p, t = posts.c, post_tags.c
    bucket = _bucket_epoch(engine, t.created_at, size).label("bucket")
    stmt = (
        select(t.tag, bucket, func.count().label("posts"), func.count(p.compound).label("scored"),
               func.sum(p.compound).label("csum"),
               func.sum(case((p.compound >= 0.05, 1), else_=0)).label("positive"),
               func.sum(case((and_(p.compound > -0.05, p.compound < 0.05), 1), else_=0))
               .label("neutral"),
               func.sum(case((p.compound <= -0.05, 1), else_=0)).label("negative"))
        .select_from(post_tags.join(posts, p.id == t.post_id))
        .where(t.tag.in_(tags), t.created_at >= start, t.created_at < end)
        .group_by(t.tag, bucket)
    )
    found: dict[tuple[str, int], Any] = {}
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            found[(row.tag, int(row.bucket))] = row
    out = []
    n = int((end - start).total_seconds()) // size
    first = int(start.timestamp())
    for tag in tags:
        for i in range(n):
            e = first + i * size
            r = found.get((tag, e))
            when = datetime.fromtimestamp(e, tz=UTC)
            if r is None:
                out.append(SeriesPoint(tag, when, 0, 0, None, 0, 0, 0))
            else:
                s = int(r.scored)
                out.append(SeriesPoint(tag, when, int(r.posts), s,
                                       float(r.csum) / s if s else None, int(r.positive or 0),
                                       int(r.neutral or 0), int(r.negative or 0)))
    return out


def relate_volume(fetch: Callable[..., list[SeriesPoint]], engine: Engine, since: datetime,
                  until: datetime) -> int | None:
    pts = fetch(engine, ["metoo", "notallmen"], since, until, timedelta(hours=1))
    a = [float(p.posts) for p in pts if p.tag == "metoo"]
    b = [float(p.posts) for p in pts if p.tag == "notallmen"]
    start, _ = align_range(since, until, 3600)
    return cross_correlation(*prepare(a, b, first_hour=start.hour), max_lag=48).best_lag


# ------------------------------------------------------------------------------- timing

def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    fn()  # warm the cache and the statement compiler
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def check_same(a: list[SeriesPoint], b: list[SeriesPoint]) -> None:
    assert len(a) == len(b), (len(a), len(b))
    for x, y in zip(a, b, strict=True):
        assert (x.tag, x.bucket, x.posts, x.scored, x.positive, x.neutral, x.negative) == (
            y.tag, y.bucket, y.posts, y.scored, y.positive, y.neutral, y.negative), (x, y)
        if x.mean_compound is None or y.mean_compound is None:
            assert x.mean_compound is y.mean_compound
        else:
            assert abs(x.mean_compound - y.mean_compound) < 1e-9


def run_dialect(name: str, engine: Engine, data: Dataset, repeat: int) -> dict[str, float]:
    t0 = time.perf_counter()
    (seed_postgres if name == "postgres" else seed_sqlite)(engine, data)
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    backfill_pairs(engine)
    backfill_s = time.perf_counter() - t0
    # The rollup side gets its own engine (connections), as the service and the CLI
    # have: a PostgreSQL backend that has just bulk-loaded millions of rows, or run
    # the raw reference's scans over 800k posts, answers relate ~2x slower after.
    engine.dispose()
    fast = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        return _run_timings(name, fast, engine, data, repeat, seed_s, backfill_s)
    finally:
        fast.dispose()


def _run_timings(name: str, fast_engine: Engine, engine: Engine, data: Dataset, repeat: int,
                 seed_s: float, backfill_s: float) -> dict[str, float]:
    until = data.end
    since = until - timedelta(days=RAW_DAYS)
    hour = timedelta(hours=1)
    check_same(series(engine, ["metoo"], since, until, hour),
               series_from_raw(engine, ["metoo"], since, until, hour))
    lag_raw = relate_volume(series_from_raw, engine, since, until)
    out: dict[str, float] = {f"{name}_seed_s": round(seed_s, 2),
                             f"{name}_pair_backfill_s": round(backfill_s, 2)}
    raw_repeat = max(3, repeat // 5)
    rel = relate(engine, "metoo", "notallmen", since, until)
    check_relate(engine, rel, lag_raw)

    def relate_raw() -> None:
        """The same answer from raw posts alone: raw hourly series, every post joined."""
        relate_volume(series_from_raw, engine, since, until)
        tone_from_posts(engine, "metoo", "notallmen", rel.since, rel.until)
        tone_from_posts(engine, "notallmen", "metoo", rel.since, rel.until)

    cases = {
        "trends": (lambda: series(fast_engine, ["metoo"], since, until, hour),
                   lambda: series_from_raw(engine, ["metoo"], since, until, hour)),
        "relate": (lambda: relate(fast_engine, "metoo", "notallmen", since, until), relate_raw),
    }
    for case_name, (fast, slow) in cases.items():
        p50, p95 = timed(fast, repeat)
        r50, r95 = timed(slow, raw_repeat)
        out.update({f"{name}_{case_name}_p50_ms": round(p50, 2),
                    f"{name}_{case_name}_p95_ms": round(p95, 2),
                    f"{name}_{case_name}_raw_p50_ms": round(r50, 2),
                    f"{name}_{case_name}_raw_p95_ms": round(r95, 2),
                    f"{name}_{case_name}_speedup_p50": round(r50 / p50, 1),
                    f"{name}_{case_name}_speedup_p95": round(r95 / p95, 1)})
        print(f"{name:8s} {case_name:7s} rollups p50 {p50:7.2f} ms  p95 {p95:7.2f} ms | "
              f"raw p50 {r50:8.2f} ms  p95 {r95:8.2f} ms | {r50 / p50:6.1f}x p50, "
              f"{r95 / p95:6.1f}x p95", flush=True)
    print(f"{name:8s} relate: best lag {rel.xcorr.best_lag:+d} h, {rel.posts_both:,} posts carry "
          f"both (pair rollup backfilled in {backfill_s:.2f} s)", flush=True)
    out[f"{name}_best_lag_h"] = float(rel.xcorr.best_lag if rel.xcorr.best_lag is not None
                                      else 0)
    return out


def check_relate(engine: Engine, rel: Any, lag_raw: int | None) -> None:
    """relate's rollup answer must equal the raw one before anything is timed."""
    assert rel.xcorr.best_lag == lag_raw, (rel.xcorr.best_lag, lag_raw)
    for got, (tag, other) in ((rel.tone_a, ("metoo", "notallmen")),
                              (rel.tone_b, ("notallmen", "metoo"))):
        ref = tone_from_posts(engine, tag, other, rel.since, rel.until)
        assert (got.posts, got.with_other, got.without_other, got.scored_with,
                got.scored_without) == (ref.posts, ref.with_other, ref.without_other,
                                        ref.scored_with, ref.scored_without), (got, ref)
        for mine, truth in ((got.mean_with, ref.mean_with),
                            (got.mean_without, ref.mean_without)):
            assert mine is not None and truth is not None and abs(mine - truth) < 1e-9


@contextmanager
def sqlite_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def pg_engine() -> Iterator[Engine | None]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure here means: no PostgreSQL to measure
        print(f"postgres: skipped ({type(exc).__name__}: {str(exc).splitlines()[0]})")
        yield None
        return
    engine = make_engine(f"{PG_URL}?options=-csearch_path%3D{schema}")
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# ------------------------------------------------------------------ raw-size scaling

FILLER_TAGS = TAGS[2:]  # filler posts carry the other tags: the metoo/notallmen answers
#                         stay the ones checked against raw above


def grow_raw(engine: Engine, data: Dataset, size: int) -> float:
    """Add filler posts (with their post_keys and post_tags rows) spread over the
    rollups' year until ``posts`` holds *size* rows; returns the seconds it took.

    INSERT … SELECT generate_series: the server makes the rows, nothing crosses the
    wire. Times are a fixed pseudo-random spread over the year (every month's
    partition grows), ids continue after the seeded posts.
    """
    t0 = time.perf_counter()
    base = len(data.posts)
    if size < base:
        raise SystemExit(f"--sizes: {size:,} is below the {base:,} raw posts the checked "
                         "answers need (lower --rate)")
    span = 365 * PER_DAY * BUCKET
    tags = "ARRAY[" + ", ".join(f"'{t}'" for t in FILLER_TAGS) + "]"
    at = f"to_timestamp({data.first} + ((i * 104729) % {span}))"
    step = 1_000_000
    with engine.begin() as conn:
        for lo in range(base + 1, size + 1, step):
            hi = min(size, lo + step - 1)
            rows = f"FROM generate_series({lo}::bigint, {hi}::bigint) AS i"
            conn.execute(text(
                "INSERT INTO posts (id, platform, key, created_at, collected_at, compound, "
                f"is_repost, sensitive) SELECT i, 'filler', 'f' || i, {at}, {at}, "
                f"((i * 7919) % 2001) / 1000.0 - 1, false, false {rows}"))
            conn.execute(text("INSERT INTO post_keys (platform, key, id, created_at) "
                              f"SELECT 'filler', 'f' || i, i, {at} {rows}"))
            conn.execute(text("INSERT INTO post_tags (post_id, tag, created_at, seq) "
                              f"SELECT i, ({tags})[1 + i % {len(FILLER_TAGS)}], {at}, 1 {rows}"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("posts", "post_tags", "post_keys"):
            conn.execute(text(f"ANALYZE {table}"))
        in_default = conn.execute(text("SELECT count(*) FROM posts_default")).scalar_one()
    assert in_default == 0, f"{in_default} posts in the default partition"
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """p50 and p95 (ms) of each of *fns*, timed in alternating rounds so that the
    machine's background load falls on every one alike."""
    for fn in fns.values():
        fn()  # warm the cache and the statement compiler
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    rng = np.random.default_rng(SEED)
    for _ in range(repeat):
        rng.shuffle(order)  # (no one is always first after the same other)
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1000)
    out = {}
    for name, got in samples.items():
        got.sort()
        out[name] = (statistics.median(got), got[min(len(got) - 1, round(0.95 * (len(got) - 1)))])
    return out


def run_scale(data: Dataset, sizes: list[int], repeat: int) -> dict[str, float]:
    """Trend and relate reads from the rollups with ``posts`` at each of *sizes* rows
    (PostgreSQL, partitioned): one schema per size, built from the same rollups and
    checked posts, then timed in alternating rounds. The reference is the smallest size.
    """
    until = data.end
    since = until - timedelta(days=RAW_DAYS)
    hour = timedelta(hours=1)
    out: dict[str, float] = {}
    with ExitStack() as stack:
        engines: dict[int, Engine] = {}
        for size in sizes:
            engine = stack.enter_context(pg_engine())
            if engine is None:
                raise SystemExit("--sizes needs PostgreSQL")
            t0 = time.perf_counter()
            seed_postgres(engine, data)
            backfill_pairs(engine)
            seed_s = time.perf_counter() - t0
            grow_s = grow_raw(engine, data, size)
            check_same(series(engine, ["metoo"], since, until, hour),
                       series_from_raw(engine, ["metoo"], since, until, hour))
            check_relate(engine, relate(engine, "metoo", "notallmen", since, until),
                         relate_volume(series_from_raw, engine, since, until))
            with engine.connect() as conn:
                parts = conn.execute(text("SELECT count(*) FROM pg_inherits "
                                          "WHERE inhparent = 'posts'::regclass")).scalar_one()
            print(f"postgres posts={size:>10,}: seeded in {seed_s:.1f} s, grown in "
                  f"{grow_s:.1f} s, {parts} partitions; rollup answers = raw answers",
                  flush=True)
            out[f"scale_{size}_build_s"] = round(seed_s + grow_s, 1)
            engine.dispose()
            engines[size] = stack.enter_context(_fresh(engine))
        fns: dict[str, Callable[[], Any]] = {}
        for size, engine in engines.items():
            fns[f"trends_{size}"] = functools.partial(series, engine, ["metoo"], since, until,
                                                      hour)
            fns[f"relate_{size}"] = functools.partial(relate, engine, "metoo", "notallmen",
                                                      since, until)
        timings = interleaved(fns, repeat)
        # the raw reference: the same trend from posts ⋈ post_tags, which grows with posts
        raw = interleaved({f"rawtrends_{size}": functools.partial(
            series_from_raw, engine, ["metoo"], since, until, hour)
            for size, engine in engines.items()}, 5)
    ref = sizes[0]
    for what in ("trends", "relate", "rawtrends"):
        got = raw if what == "rawtrends" else timings
        for size in sizes:
            p50, p95 = got[f"{what}_{size}"]
            out[f"scale_{what}_{size}_p50_ms"] = round(p50, 2)
            out[f"scale_{what}_{size}_p95_ms"] = round(p95, 2)
            growth = p95 / got[f"{what}_{ref}"][1]
            if size != ref:
                out[f"scale_{what}_p95_growth_{size}_vs_{ref}"] = round(growth, 3)
            print(f"postgres {what:9s} posts={size:>10,}: p50 {p50:8.2f} ms  p95 {p95:8.2f} ms"
                  f"  (p95 x{growth:.2f} of {ref:,})", flush=True)
    worst = max(v for k, v in out.items() if k.startswith(("scale_trends_p95_growth",
                                                          "scale_relate_p95_growth")))
    out["scale_rollup_p95_growth_max"] = worst
    out["scale_rollup_p95_growth_ok"] = float(worst <= 1.2)
    return out


@contextmanager
def _fresh(engine: Engine) -> Iterator[Engine]:
    """A new engine on *engine*'s database: fresh connections for the timed reads."""
    fast = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        yield fast
    finally:
        fast.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per query")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--rate", type=float, default=20.0,
                        help="mean posts per tag per 5-minute bucket (raw sample and rollups)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--sizes", default="",
                        help="comma list of raw post counts, e.g. 1000000,5000000: time the "
                             "rollup reads on PostgreSQL with posts at each size (only that)")
    args = parser.parse_args(argv)
    end = datetime(2026, 11, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    data = Dataset(end, args.seed, args.rate)
    print(f"generated {len(data.bucket_rows):,} bucket rows, {len(data.posts):,} raw posts, "
          f"{len(data.post_tags):,} post tags in {time.perf_counter() - t0:.1f} s", flush=True)
    result: dict[str, float] = {"rate_posts_per_bucket": args.rate,
                                "bucket_rows": float(len(data.bucket_rows)),
                                "raw_posts": float(len(data.posts))}
    if args.sizes:
        sizes = sorted(int(v.replace("_", "")) for v in args.sizes.split(","))
        result.update(run_scale(data, sizes, args.repeat))
        result["total_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(result))
        return 0
    with sqlite_engine() as engine:
        result.update(run_dialect("sqlite", engine, data, args.repeat))
    if not args.no_postgres:
        with pg_engine() as pg:
            if pg is not None:
                result.update(run_dialect("postgres", pg, data, args.repeat))
    result["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
