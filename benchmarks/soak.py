"""Soak: the real service, with its dashboard, for a set time against every fake, under faults.

``monitor run`` runs as a child process against every fake platform of
``tests/fakes`` (the :data:`tests.fakes.__main__.FAKES` registry) while this
process:

* adds new posts to every fake at ``--scale`` times a realistic rate (the
  base is 6 posts a minute per platform, about what #metoo carries on a busy
  day on one Mastodon instance; the firehose also carries two unrelated
  events per post);
* injects a fault every ``--fault-every`` seconds, in turn: a burst of three
  503s on every HTTP fake, two 429s with ``Retry-After``, a stall longer than
  the HTTP timeout, and a cut of every websocket (Jetstream, Nostr relays);
* reads the dashboard's API every 10 s (what a newsroom screen does);
* stops the Hacker News fake at 40 % of the run: a ``flatline`` rule on that
  source must then fire once per Hacker News stream, delivered by the log
  notifier, and no other alert may fire;
* samples the service's resident memory (VmRSS, process and children) every
  2 s.

At the end posts stop arriving, the service gets up to ``--drain`` seconds to
store what is left, and is stopped with SIGTERM. Reported: posts stored
against the fakes' own list (missing and extra), alerts delivered against
expected, RSS peak / final / steady state (median of the run's second half) and
its growth (median of the last quarter minus the second quarter), and log lines
per minute. Targets: nothing lost, RSS at most 150 MB, flat.

Run: ``.venv/bin/python -m benchmarks.soak [--minutes 10]`` from the repository
root. The last line is one flat JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from sqlalchemy import select

from monitor.store.db import make_engine
from monitor.store.schema import posts
from tests.fakes.__main__ import Options, Running, start_all
from tests.fakes.data import TAGS, World
from tests.fakes.seeds import Expected

ROOT = Path(__file__).resolve().parent.parent
MONITOR = [sys.executable, "-c", "from monitor.commands import main; main()"]
RSS_TARGET_MB = 150.0
BASE_PER_MINUTE = 6.0  # realistic posts a minute per platform (see the docstring)
STOPPED = "hackernews"  # the fake switched off mid-run: its flatline alert must fire
RULE = "soak-silent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """VmRSS of *pid* and every process below it, in MB (0 once gone)."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return total / 1024


def origins(fake: Running) -> list[str]:
    """The HTTP fakes' base URLs (their ``/_fake/faults`` switchboard lives there)."""
    out = []
    for _, url in fake.urls:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            out.append(f"{parts.scheme}://{parts.netloc}")
    return sorted(set(out))


def post_json(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


class Faults:
    """One fault a turn, every kind in order (see the module docstring)."""

    KINDS = ("status", "rate_limit", "stall", "websocket")

    def __init__(self, fakes: list[Running], stall_seconds: float) -> None:
        self.fakes = fakes
        self.stall = stall_seconds
        self.turn = 0
        self.injected: dict[str, int] = dict.fromkeys(self.KINDS, 0)

    def inject(self, stopped: set[str]) -> None:
        kind = self.KINDS[self.turn % len(self.KINDS)]
        self.turn += 1
        for fake in self.fakes:
            if fake.name in stopped:
                continue
            if kind == "websocket":
                fake.drop()
                continue
            body: dict[str, object] = {"kind": kind, "count": 3 if kind == "status" else 2,
                                       "status": 503}
            if kind == "rate_limit":
                body["seconds"] = 2.0
            if kind == "stall":
                body.update(count=1, seconds=self.stall)
            for origin in origins(fake):
                try:
                    post_json(f"{origin}/_fake/faults", body)
                except OSError:
                    continue
        self.injected[kind] += 1


def write_config(path: Path, db_url: str, fakes: list[Running], web_port: int,
                 interval: str) -> None:
    path.write_text(yaml.safe_dump({
        "database": {"url": db_url},
        "hashtags": list(TAGS),
        "privacy": {"hash_secret": "soak-" + "s" * 32},
        "logging": {"level": "INFO"},
        "http": {"contact": "soak@example.org", "timeout": "3s", "max_retries": 2,
                 "backoff_base": "0.2s", "backoff_max": "5s",
                 "per_host_min_interval": "0s", "per_host_concurrency": 4},
        "web": {"enabled": True, "host": "127.0.0.1", "port": web_port},
        "sources": [s for fake in fakes for s in fake.sources(interval)],
        "rules": [{"name": RULE, "kind": "flatline", "silent_for": "60s",
                   "sources": [STOPPED], "repeat_interval": "24h", "resolve_after": "1h"}],
        "notify": {"log": {"enabled": True}},
    }, sort_keys=False), encoding="utf-8")


def read_dashboard(port: int) -> int:
    """Fetch what the dashboard shows; returns the number of failed requests."""
    failed = 0
    for path in ("/api/health", "/api/tags", "/api/series?tag=metoo&since=1h&step=5m",
                 "/api/top?since=1h", "/api/alerts", "/"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                resp.read()
        except OSError:
            failed += 1
    return failed


def expected_of(fakes: list[Running], frozen: dict[str, Expected]) -> Expected:
    merged: Expected = {}
    for fake in fakes:
        merged.update(frozen.get(fake.name) or fake.expected())
    return merged


def stored_keys(db_url: str) -> list[tuple[str, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [(r.platform, r.key) for r in conn.execute(select(posts.c.platform,
                                                                     posts.c.key))]
    finally:
        engine.dispose()


def streams_of(config: Path, source: str) -> int:
    done = subprocess.run([*MONITOR, "status", "--format", "json", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    rows = json.loads(done.stdout) if done.returncode == 0 else []
    return len({r["stream"] for r in rows if r.get("source") == source})


def run(args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(args.seed)
    world = World(seed=args.seed, hours=1, mastodon_posts=40, bluesky_posts=20)
    fakes = start_all(world, Options(seed=args.seed))
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    db_url = args.db or f"sqlite:///{tmp / 'monitor.db'}"
    config, log_path = tmp / "config.yaml", tmp / "service.log"
    web_port = free_port()
    write_config(config, db_url, fakes, web_port, args.interval)
    subprocess.run([*MONITOR, "init-db", "--config", str(config)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    log_file = log_path.open("ab")
    proc = subprocess.Popen([*MONITOR, "run", "--config", str(config)], cwd=ROOT,
                            stdout=log_file, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    samples: list[tuple[float, float]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(2.0):
            samples.append((time.monotonic(), rss_mb(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    faults = Faults(fakes, stall_seconds=4.0)
    per_second = args.scale * BASE_PER_MINUTE / 60.0
    started = time.monotonic()
    duration = args.minutes * 60.0
    stop_at = started + 0.4 * duration
    quiet_at = stop_at - 30.0  # no new posts on the stopped fake for its last 30 s
    stopped: set[str] = set()
    frozen: dict[str, Expected] = {}
    added = dashboard_failures = 0
    next_fault = started + args.fault_every
    next_read = started + 10.0
    print(f"soak: {len(fakes)} fakes, {args.minutes:g} min, {per_second:.2f} posts/s per "
          f"platform, a fault every {args.fault_every:g} s; database {db_url.split('?')[0]}; "
          f"log {log_path}", flush=True)
    try:
        while (now := time.monotonic()) < started + duration:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode}; see {log_path}")
            for fake in fakes:
                if fake.name in stopped or (fake.name == STOPPED and now >= quiet_at):
                    continue
                # Poisson arrivals: each platform gets per_second posts a second on average
                for _ in range(_poisson(rng, per_second)):
                    try:
                        fake.add_post(rng)
                        added += 1
                    except RuntimeError:
                        break
            if now >= stop_at and STOPPED not in stopped:
                victim = next(f for f in fakes if f.name == STOPPED)
                frozen[STOPPED] = victim.expected()
                victim.stop()
                stopped.add(STOPPED)
                print(f"  {now - started:5.0f} s: stopped the {STOPPED} fake", flush=True)
            if now >= next_fault:
                faults.inject(stopped)
                next_fault += args.fault_every
            if now >= next_read:
                dashboard_failures += read_dashboard(web_port)
                next_read += 10.0
            time.sleep(1.0)
        # drain: no new posts; the service gets time to store what is left
        expected = expected_of(fakes, frozen)
        drain_end = time.monotonic() + args.drain
        got = set(stored_keys(db_url))
        while not set(expected) <= got and time.monotonic() < drain_end:
            time.sleep(2.0)
            got = set(stored_keys(db_url))
        drained = time.monotonic() - (drain_end - args.drain)
    finally:
        stop_sampling.set()
        sampler.join(5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log_file.close()
        for fake in reversed(fakes):
            if fake.name not in stopped:
                fake.stop()
    keys = stored_keys(db_url)
    missing = set(expected) - set(keys)
    extra = set(keys) - set(expected)
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    lines = log_text.splitlines()
    fired = [line for line in lines if f"alert FIRING {RULE}" in line]
    other_alerts = [line for line in lines if "alert FIRING" in line and RULE not in line]
    alerts_expected = streams_of(config, STOPPED)
    minutes_run = (time.monotonic() - started) / 60.0
    rss = [mb for _, mb in samples if mb > 0]
    half, quarter = rss[len(rss) // 2:], len(rss) // 4
    growth = (statistics.median(rss[3 * quarter:]) - statistics.median(rss[quarter:2 * quarter])
              if quarter else 0.0)
    result = {
        "minutes": round(minutes_run, 2),
        "posts_added": added,
        "posts_expected": len(expected),
        "posts_stored": len(keys),
        "posts_missing": len(missing),
        "posts_extra": len(extra),
        "posts_duplicated": len(keys) - len(set(keys)),
        "drain_s": round(drained, 1),
        "alerts_expected": alerts_expected,
        "alerts_sent": len(fired),
        "alerts_unexpected": len(other_alerts),
        "rss_peak_mb": round(max(rss), 1) if rss else 0.0,
        "rss_final_mb": round(rss[-1], 1) if rss else 0.0,
        "rss_steady_mb": round(statistics.median(half), 1) if half else 0.0,
        "rss_growth_mb": round(growth, 1),
        "ratio_rss_peak_vs_target": round(max(rss) / RSS_TARGET_MB, 3) if rss else 0.0,
        "log_lines_per_min": round(len(lines) / minutes_run, 1),
        "log_tracebacks": log_text.count("Traceback"),
        "log_errors": sum(" ERROR " in line for line in lines),
        "faults_injected": sum(faults.injected.values()),
        "dashboard_failures": dashboard_failures,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if missing:
        print(f"missing (first 5): {sorted(missing)[:5]}", file=sys.stderr)
    if other_alerts:
        print(f"unexpected alerts (first 3): {other_alerts[:3]}", file=sys.stderr)
    print(f"faults injected: {faults.injected}; log: {log_path}")
    return result


def _poisson(rng: random.Random, mean: float) -> int:
    count, threshold, product = 0, pow(2.718281828459045, -mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def report(result: dict[str, float], say: Callable[[str], None] = print) -> None:
    say(f"posts: {result['posts_stored']} stored of {result['posts_expected']} expected "
        f"({result['posts_missing']} missing, {result['posts_extra']} extra, "
        f"{result['posts_duplicated']} twice; drained in {result['drain_s']} s)")
    say(f"alerts: {result['alerts_sent']} delivered of {result['alerts_expected']} expected, "
        f"{result['alerts_unexpected']} unexpected")
    say(f"RSS: peak {result['rss_peak_mb']} MB ({result['ratio_rss_peak_vs_target']:.2f}x the "
        f"{RSS_TARGET_MB:.0f} MB target), steady {result['rss_steady_mb']} MB, final "
        f"{result['rss_final_mb']} MB, growth over the run {result['rss_growth_mb']} MB")
    say(f"log: {result['log_lines_per_min']} lines/min, {result['log_tracebacks']} tracebacks, "
        f"{result['log_errors']} errors; {result['faults_injected']} faults injected; "
        f"dashboard failures {result['dashboard_failures']}; load average "
        f"{result['load_avg_1m']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=10.0,
                        help="times the realistic post rate (default 10)")
    parser.add_argument("--fault-every", type=float, default=15.0, metavar="S")
    parser.add_argument("--interval", default="5s", help="poll interval of the polled fakes")
    parser.add_argument("--drain", type=float, default=90.0, metavar="S")
    parser.add_argument("--db", default="", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    result = run(args)
    report(result)
    print(json.dumps(result))
    return 0 if not result["posts_missing"] and not result["posts_duplicated"] else 1


if __name__ == "__main__":
    sys.exit(main())
