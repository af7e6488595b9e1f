"""`make fakes` shows everything: rules in the snippet, a burst the spike rule fires on,
new posts on the Jetstream fake, and `monitor --version`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from monitor import __version__
from monitor.config import Config, load_config
from monitor.detect.engine import evaluate
from monitor.store.buckets import bucket_start
from tests.detect.synth import seed_buckets
from tests.fakes.__main__ import BURST_POSTS, DEMO_RULES, SEED_POSTS
from tests.fakes.data import World

ROOT = Path(__file__).resolve().parent.parent


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "monitor", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"hashtag-monitor {__version__}"


def _start_fakes(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("In ") or (lines and "rules:" in "".join(lines)
                                      and line.strip() == ""):
            break
    return proc, "".join(lines)


def test_snippet_has_rules_and_jetstream_carries_new_posts(tmp_path: Path) -> None:
    proc, out = _start_fakes("--new-every", "0.3", "--burst-after", "0")
    try:
        snippet = out[out.index("# config.yaml snippet"):]
        config = tmp_path / "config.yaml"
        config.write_text(snippet + f"database:\n  url: sqlite:///{tmp_path}/m.db\n",
                          encoding="utf-8")
        cfg = load_config(config)  # the snippet is a valid config as printed
        assert {r.kind for r in cfg.rules} == {"spike", "flatline"}
        jet_url = next(s.hosts[0] for s in cfg.sources if s.type == "jetstream")
        seeds = SEED_POSTS // 2
        creates = asyncio.run(_count_post_creates(jet_url, seconds=4.0))
        # the seed replay, then posts published while we listen
        assert creates > seeds, (creates, seeds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


async def _count_post_creates(url: str, seconds: float) -> int:
    from websockets.asyncio.client import connect

    keys: set[str] = set()
    async with connect(url + "?wantedCollections=app.bsky.feed.post") as ws:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=left)
            except TimeoutError:
                break
            event = json.loads(frame)
            commit = event.get("commit") or {}
            if commit.get("operation") == "create" and "#" in json.dumps(commit.get("record")):
                keys.add(f"{event.get('did')}/{commit.get('rkey')}")
    return len(keys)


def test_the_demo_spike_rule_fires_on_the_fakes_burst(engine: Engine) -> None:
    """The fakes' seeded day of #metoo, then the burst: the printed spike rule fires."""
    now = datetime.now(UTC)
    world = World(seed=7, hours=26.0, mastodon_posts=SEED_POSTS, bluesky_posts=SEED_POSTS // 2)
    per_bucket = Counter(bucket_start(p.created_at) for p in world.posts() if "metoo" in p.tags)
    closed = bucket_start(now) - timedelta(minutes=5)  # the burst's bucket, just closed
    per_bucket[closed] += BURST_POSTS
    start = bucket_start(world.start)
    steps = int((closed - start) / timedelta(minutes=5)) + 1
    counts = [(start + i * timedelta(minutes=5),
               float(per_bucket.get(start + i * timedelta(minutes=5), 0))) for i in range(steps)]
    seed_buckets(engine, "metoo", counts)
    cfg = Config.model_validate({"hashtags": ["metoo"], "rules": DEMO_RULES})
    report = evaluate(engine, cfg, now)
    fired = [o for o in report.outcomes if o.rule == "spike" and o.state == "firing"]
    assert fired, [o.summary for o in report.outcomes]
    assert re.search(r"\d+x the usual", fired[0].summary or "")

