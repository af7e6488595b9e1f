"""Several `monitor run` processes on one PostgreSQL: round time by process count, and failover.

Setup (all on 127.0.0.1): one fake server acting as ``--instances`` Mastodon
instances (one port each, so each is its own host to the service), every
request answered after ``--latency`` seconds; ``--tags`` followed tags, so
instances x tags polled streams (default 500 x 4 = 2,000); a Jetstream fake.
Every process gets ``cluster.concurrency`` = ``--concurrency`` (at most that
many host jobs at once per process: the stand-in for a per-IP budget, which
is what more machines add). Each process count runs on a fresh PostgreSQL
schema.

A *round* is every stream polled once. The fake's request log gives, per
stream, the times it was polled; round k ends when the last stream has had
its k-th poll after the measurement start (which is when every process has
joined and a first round is done: first polls are backfills). Printed per
process count: the mean round time and its ratio to one process's (the
reference, measured in the same run), and the ideal round time
(instances x tags x latency / (concurrency x processes)).

Failover (with the largest process count): the Jetstream leader (from
``cluster_members``) gets SIGKILL; the time until the fake sees the next
subscription is the failover time, also in lease periods (target: at most 2).
The longest pause of any host's polling around the kill is printed too (the
killed process's hosts must be taken over within the lease).

Politeness is checked on the way: the most requests any host had in flight at
once (cluster-wide; ``per_host_concurrency`` is 1, so more than 1 means two
processes polled one host at the same time).

Run: ``.venv/bin/python -m benchmarks.cluster`` (about 3-4 minutes with the
defaults; ``--instances 100`` for a quick look). The last line is one JSON
object of numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from monitor.store.db import make_engine
from tests.cluster.harness import (
    Members,
    leader,
    members_alive,
    monitor_cli,
    pg_schema,
    write_config,
)
from tests.fakes.data import TAGS
from tests.fakes.jetstream import JetstreamFake
from tests.fakes.mastodon_many import ManyMastodon


def _rounds(fake: ManyMastodon, since: float, streams: int) -> list[float]:
    """End times of the complete rounds since *since* (every stream polled k times)."""
    per_stream: dict[tuple[int, str | None], list[float]] = defaultdict(list)
    for hit in fake.hits(since):
        per_stream[(hit.port, hit.tag)].append(hit.at)
    if len(per_stream) < streams:
        return []
    depth = min(len(times) for times in per_stream.values())
    return [max(sorted(times)[k] for times in per_stream.values()) for k in range(depth)]


def _wait(check: Any, what: str, timeout: float, members: Members) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: timed out after {timeout:.0f}s waiting for {what}\n"
                             + members.logs(1500))
        time.sleep(0.2)


def run(processes: int, args: argparse.Namespace, fake: ManyMastodon, jet: JetstreamFake,
        folder: Path, *, failover: bool) -> dict[str, float]:
    streams = len(fake.urls) * len(args.tags)
    lease = args.lease
    with pg_schema("bench") as url:
        sources = [
            {"type": "mastodon", "instances": fake.urls, "interval": "0.5s", "jitter": "0s",
             "page_limit": 40, "backfill_pages": 2},
            {"type": "jetstream", "hosts": [jet.url], "rewind": "1s", "batch_size": 50,
             "batch_interval": "0.2s"},
        ]
        config = write_config(folder / f"config-{processes}.yaml", url, sources,
                              lease=f"{lease}s", concurrency=args.concurrency,
                              hashtags=list(args.tags),
                              http={"per_host_min_interval": f"{args.latency}s"})
        monitor_cli(config, "init-db", timeout=120)
        cpu_before = _children_cpu()
        engine: Engine = make_engine(url)
        members = Members(config, folder)
        started = time.monotonic()
        try:
            for i in range(processes):
                members.add(f"p{processes}-{i + 1}")
            _wait(lambda: len(members_alive(engine, lease)) >= processes,
                  f"{processes} members in cluster_members", 60, members)
            # a first full round since everyone joined (backfills and joining are warm-up)
            joined = time.monotonic()
            _wait(lambda: _rounds(fake, joined, streams), "a first full round",
                  args.timeout, members)
            t0 = _rounds(fake, joined, streams)[0]
            _wait(lambda: len(_rounds(fake, t0, streams)) >= args.rounds + 1,
                  f"{args.rounds} measured rounds", args.timeout * args.rounds, members)
            ends = _rounds(fake, t0, streams)[: args.rounds + 1]
            # polls per second between the first and the last measured round's end; a
            # round is `streams` polls (one request each once every stream has its cursor)
            polls = len([h for h in fake.hits(ends[0]) if h.at <= ends[-1]])
            rate = polls / (ends[-1] - ends[0])
            round_s = streams / rate
            out = {f"round_s_{processes}": round_s, f"polls_per_s_{processes}": rate,
                   f"warmup_s_{processes}": t0 - started}
            # the fake's side: how long it took to answer (50 ms is the configured latency;
            # much more means the fake itself, one Python process, is short of CPU)
            answered = [b - a for _, _, a, b in list(fake.spans) if ends[0] <= a <= ends[-1]]
            out[f"fake_answer_ms_{processes}"] = 1000 * sum(answered) / max(1, len(answered))
            print(f"{processes} process(es): round {round_s:.2f}s ({rate:.0f} polls/s over "
                  f"{ends[-1] - ends[0]:.1f}s), warm-up {t0 - started:.1f}s, the fake answered "
                  f"in {out[f'fake_answer_ms_{processes}']:.0f} ms on average", flush=True)
            victims: set[str] = set()
            if failover:
                out.update(_failover(fake, jet, engine, members, lease, args.timeout, victims))
            codes = members.stop_all()
            # SIGTERM must stop every process cleanly (the one killed for failover aside)
            out[f"unclean_exits_{processes}"] = float(
                sum(1 for name, code in codes.items() if code and name not in victims))
            for name, code in codes.items():
                if code and name not in victims:
                    print(f"  {name} exited {code} after SIGTERM; log: {folder / name}.log")
            # CPU the processes used per poll over their whole life: with 2 cores shared,
            # cpu_ms_per_poll x polls/s near 2000 means the round is CPU-bound, not latency-bound
            polls_total = len(fake.hits(started))
            out[f"cpu_ms_per_poll_{processes}"] = (
                1000 * (_children_cpu() - cpu_before) / max(1, polls_total))
            return out
        finally:
            members.stop_all()
            engine.dispose()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _failover(fake: ManyMastodon, jet: JetstreamFake, engine: Engine, members: Members,
              lease: float, timeout: float, victims: set[str]) -> dict[str, float]:
    lead = _wait(lambda: leader(engine, lease), "a Jetstream leader", 30, members)
    if isinstance(lead, list):
        raise SystemExit(f"benchmark: two Jetstream leaders at once: {lead}")
    victim = members.by_pid(lead.pid)
    if victim is None:
        raise SystemExit(f"benchmark: the leader pid {lead.pid} is none of ours")
    subscribed = len(jet.subscriptions)
    before = time.monotonic()
    victim.kill()
    killed = time.monotonic()
    victims.add(victim.name)
    _wait(lambda: len(jet.subscriptions) > subscribed, "a new Jetstream subscription",
          timeout, members)
    took_over = jet.subscriptions[subscribed].at - killed
    # polling pauses: for each host, the longest gap between polls spanning the kill
    time.sleep(2 * lease + 1)
    gaps: list[float] = []
    by_host: dict[int, list[float]] = defaultdict(list)
    for hit in fake.hits(before - 5):
        by_host[hit.port].append(hit.at)
    for times in by_host.values():
        times.sort()
        gaps.append(max((b - a for a, b in itertools.pairwise(times)
                         if b > killed and a < killed + lease * 2), default=0.0))
    new_lead = leader(engine, lease)
    named = f"pid {new_lead.pid}" if new_lead and not isinstance(new_lead, list) else new_lead
    print(f"failover: Jetstream resubscribed {took_over:.2f}s after kill -9 of the leader "
          f"({took_over / lease:.2f} lease periods of {lease:g}s); longest host polling "
          f"pause across the kill {max(gaps, default=0):.2f}s; new leader "
          f"{named}",
          flush=True)
    return {"failover_s": took_over, "failover_leases": took_over / lease,
            "max_host_pause_after_kill_s": max(gaps, default=0.0)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--tags", type=lambda s: tuple(s.split(",")), default=TAGS,
                        help="comma-separated (default: the fakes' four tags)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="cluster.concurrency: host jobs at once per process")
    parser.add_argument("--processes", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per count")
    parser.add_argument("--lease", type=float, default=2.0, help="cluster.lease, seconds")
    parser.add_argument("--posts", type=int, default=500, help="statuses the fake serves")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="write the configs and process logs there (default: a temp dir)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]
    # a SIGTERM (timeout, Ctrl-C elsewhere) still stops the `monitor run` children
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    fake = ManyMastodon(args.instances, posts=args.posts, latency=args.latency, tags=args.tags)
    jet = JetstreamFake()
    streams = args.instances * len(args.tags)
    ideal = streams * args.latency / args.concurrency
    print(f"{args.instances} fake instances x {len(args.tags)} tags = {streams} streams, "
          f"{args.latency * 1000:.0f} ms per request, concurrency {args.concurrency} per "
          f"process; ideal round with one process {ideal:.1f}s", flush=True)
    results: dict[str, float] = {"instances": args.instances, "streams": streams,
                                 "latency_ms": args.latency * 1000,
                                 "concurrency": args.concurrency, "lease_s": args.lease}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            for n in counts:
                fake.log.clear()
                fake.spans.clear()
                fake.peak_host_inflight.clear()
                results.update(run(n, args, fake, jet, folder, failover=n == max(counts)))
                results[f"ideal_round_s_{n}"] = ideal / n
                results[f"max_host_inflight_{n}"] = float(
                    max(fake.peak_host_inflight.values(), default=0))
    finally:
        jet.stop()
        fake.stop()
    base = results.get(f"round_s_{counts[0]}")
    for n in counts[1:]:
        if base and results.get(f"round_s_{n}"):
            results[f"speedup_{n}"] = base / results[f"round_s_{n}"] * counts[0]
    print("process count | round (s) | ideal (s) | speed-up vs 1 | max in flight per host")
    for n in counts:
        print(f"{n:>13} | {results[f'round_s_{n}']:>9.2f} | {results[f'ideal_round_s_{n}']:>9.2f}"
              f" | {results.get(f'speedup_{n}', 1.0):>13.2f} | "
              f"{results[f'max_host_inflight_{n}']:.0f}")
    if "speedup_3" in results:
        verdict = "meets" if results["speedup_3"] >= 2.5 else "misses"
        print(f"speed-up at 3 processes {results['speedup_3']:.2f}x ({verdict} the 2.5x target)")
    if "failover_leases" in results:
        verdict = "meets" if results["failover_leases"] <= 2 else "misses"
        print(f"failover {results['failover_s']:.2f}s = {results['failover_leases']:.2f} lease "
              f"periods ({verdict} the 2-lease target)")
    # the machine's load while measuring: the speed-up needs idle cores to show
    results["load_avg_1m_end"] = os.getloadavg()[0]
    results["cpu_count"] = float(os.cpu_count() or 0)
    print(f"load average at the end {results['load_avg_1m_end']:.1f} on "
          f"{results['cpu_count']:.0f} cores")
    print(json.dumps({k: round(float(v), 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
