"""End to end: the fakes on 127.0.0.1, `monitor run` as a real process, the database after.

Two Mastodon instances (some statuses federated to both), Bluesky search and
Jetstream (the same Bluesky posts, plus posts only the firehose carries, plus
noise and deletes). The service is killed (SIGKILL) mid-way, posts arrive
while it is down, and it is started again. Afterwards the database must hold
exactly the fakes' posts, once each; ``monitor trends`` must count exactly the
fakes' posts per tag and 5-minute bucket; and SIGTERM must stop it cleanly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select

from monitor.store.buckets import bucket_start
from monitor.store.db import make_engine
from monitor.store.schema import cursors, deletions, post_tags, posts, stream_health, tag_buckets
from tests.fakes.bluesky import BlueskyFake, start_bluesky_fake
from tests.fakes.data import _SENTENCES, DISPLAY, TAGS, SeedPost, World
from tests.fakes.jetstream import JetstreamFake, commit_delete, noise_events
from tests.fakes.mastodon import MastodonFake, start_mastodon_fake

MONITOR = [sys.executable, "-c", "from monitor.commands import main; main()"]
ROOT = Path(__file__).resolve().parent.parent


class Fakes:
    def __init__(self, world: World) -> None:
        self.world = world
        self.masto_a: MastodonFake = start_mastodon_fake(world, "a")
        self.masto_b: MastodonFake = start_mastodon_fake(world, "b")
        self.bluesky: BlueskyFake = start_bluesky_fake(world, require_auth=True)
        self.jetstream = JetstreamFake()

    def stop(self) -> None:
        for fake in (self.jetstream, self.bluesky, self.masto_b, self.masto_a):
            fake.stop()


@pytest.fixture
def world() -> World:
    return World(seed=17, hours=2, mastodon_posts=70, bluesky_posts=40)


@pytest.fixture
def fakes(world: World) -> Iterator[Fakes]:
    running = Fakes(world)
    yield running
    running.stop()


def _stored(platform: str, key: str) -> str:
    from tests.post_keys import stored_key

    return stored_key(platform, key, "e2e-secret-" + "x" * 24)


def write_config(path: Path, db_url: str, fakes: Fakes) -> Path:
    from tests.fakes.bluesky import APP_PASSWORD, IDENTIFIER

    config = {
        "database": {"url": db_url},
        "privacy": {"hash_secret": "e2e-secret-" + "x" * 24},
        "logging": {"level": "INFO"},
        "http": {"contact": "e2e@example.org", "timeout": "3s", "max_retries": 2,
                 "backoff_base": "0.05s", "backoff_max": "0.5s",
                 "per_host_min_interval": "0.005s", "per_host_concurrency": 4},
        "sources": [
            {"type": "mastodon", "instances": [fakes.masto_a.url, fakes.masto_b.url],
             "interval": "0.5s", "jitter": "0.1s", "page_limit": 20, "backfill_pages": 50},
            {"type": "bluesky_search", "appview": fakes.bluesky.url, "pds": fakes.bluesky.url,
             "identifier": IDENTIFIER, "app_password": APP_PASSWORD,
             "interval": "0.5s", "jitter": "0.1s", "page_limit": 25, "backfill_pages": 50},
            {"type": "jetstream", "hosts": [fakes.jetstream.url], "rewind": "1s",
             "batch_size": 20, "batch_interval": "0.2s"},
        ],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def firehose_only_posts(world: World, count: int, first_n: int) -> list[SeedPost]:
    """Bluesky posts that only Jetstream carries (search does not know them)."""
    rng = random.Random(first_n)
    out = []
    for i in range(count):
        tags = tuple(rng.sample(TAGS, rng.choice([1, 1, 2])))
        sentence, lang = rng.choice(_SENTENCES)
        created = world.start + timedelta(seconds=rng.uniform(0, world.hours * 3600))
        out.append(SeedPost(
            n=first_n + i, platform="bluesky", created_at=created.replace(microsecond=0),
            tags=tags, text=sentence + " " + " ".join("#" + DISPLAY[t] for t in tags),
            lang=lang, author=f"did:plc:firehose{i % 7}"))
    return out


class Service:
    """`monitor run` as a child process, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen([*MONITOR, "run", "--config", str(config)], cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def terminate(self, within: float) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(within)
        self._log.close()
        return code, time.monotonic() - started

    def alive(self) -> bool:
        return self.proc.poll() is None


def wait_for(check: Callable[[], bool], what: str, service: Service | None = None,
             timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if service is not None and not service.alive():
            raise AssertionError(f"service exited while waiting for {what}:\n"
                                 + service.log_path.read_text()[-3000:])
        if time.monotonic() > deadline:
            log = service.log_path.read_text()[-3000:] if service else ""
            raise AssertionError(f"timed out waiting for {what}\n{log}")
        time.sleep(0.1)


def scalar(engine: Engine, stmt: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(stmt).scalar()


def monitor_cli(config: Path, *args: str) -> str:
    done = subprocess.run([*MONITOR, *args, "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(180)
def test_collects_exactly_the_fakes_posts_across_a_kill_and_restart(
        db_url: str, fakes: Fakes, world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", db_url, fakes)
    log = tmp_path / "service.log"
    jet_only = firehose_only_posts(world, 30, first_n=900_000)
    bluesky = world.bluesky_posts()
    rng = random.Random(5)

    first = Service(config, log)
    wait_for(lambda: fakes.jetstream.subscribers == 1, "the Jetstream subscription", first)
    engine = make_engine(db_url)
    try:
        # part one: the firehose carries half of its own posts, the world's Bluesky posts
        # (also found by search), noise, and deletes of two posts we hold and of others
        fakes.jetstream.publish_posts(jet_only[:15], noise=5, seed=1)
        fakes.jetstream.publish_posts(bluesky, noise=2, seed=2)
        fakes.jetstream.publish([commit_delete(bluesky[0].did, bluesky[0].rkey),
                                 commit_delete(jet_only[0].did, jet_only[0].rkey),
                                 *noise_events(rng, 20)])
        wait_for(lambda: scalar(engine, select(func.count()).select_from(posts)
                                .where(posts.c.platform == "mastodon")) > 0
                 and scalar(engine, select(cursors.c.value)
                            .where(cursors.c.source == "jetstream")) is not None,
                 "the first batches", first)
        first.kill()  # mid-way: polls in flight, firehose batches pending

        # while it is down: new posts everywhere
        world.add_mastodon_post(["metoo", "ididit"], instances=("a", "b"))
        world.add_mastodon_post(["notallmen"], instances=("b",))
        late_bsky = world.add_bluesky_post(["howiwillchange"])
        fakes.jetstream.publish_posts([*jet_only[15:], late_bsky], noise=5, seed=3)

        deleted = [bluesky[0], jet_only[0]]
        # a deletion removes the post (its row and tags): not among the keys
        expected_keys = (world.expected_keys() | {("bluesky", p.uri) for p in jet_only}) - {
            ("bluesky", p.uri) for p in deleted}
        expected_buckets = Counter(world.expected_bucket_counts())
        for post in jet_only:
            expected_buckets.update((t, bucket_start(post.created_at)) for t in post.tags)
        # the rollups keep counting a deleted post that was stored before its delete
        # came (privacy.deletions: keep); one whose delete came in the same batch (or
        # a replay's) was never stored nor counted
        remaining = Counter(expected_buckets)
        for post in deleted:
            remaining.subtract((t, bucket_start(post.created_at)) for t in post.tags)
        remaining = +remaining

        second = Service(config, log)

        def complete() -> bool:
            stored = scalar(engine, select(func.count()).select_from(posts))
            cursor = scalar(engine, select(cursors.c.value).where(cursors.c.source == "jetstream"))
            return bool(stored >= len(expected_keys) and cursor is not None
                        and int(cursor) == fakes.jetstream.last_time_us)

        wait_for(complete, "every post", second)
        time.sleep(1.5)  # a few more polls: nothing may be added twice
        assert second.alive()
        code, took = second.terminate(within=10)
        output = log.read_text()
        assert code == 0, output[-3000:]
        assert took < 5, f"SIGTERM took {took:.1f}s"
        assert "SIGTERM received: stopping" in output and "stopped after" in output

        with engine.connect() as conn:
            got = [(r.platform, r.key) for r in conn.execute(select(posts.c.platform,
                                                                     posts.c.key))]
            buckets = {(r.tag, r.bucket_start): r.posts for r in conn.execute(
                select(tag_buckets.c.tag, tag_buckets.c.bucket_start, tag_buckets.c.posts))}
            per_tag = dict(conn.execute(select(post_tags.c.tag, func.count())
                                        .group_by(post_tags.c.tag)).all())
            gone = {(r.platform, r.key) for r in conn.execute(select(deletions))}
            health = list(conn.execute(select(stream_health)))
        # exactly the fakes' posts, none missing, none twice
        assert len(got) == len(set(got))
        # stored keys are keyed pseudonyms under authors: hash (issue 12)
        assert set(got) == {(pl, _stored(pl, k)) for pl, k in expected_keys}
        # the time series count each post once per tag, in its 5-minute bucket (a
        # deleted post: counted when it was stored before its deletion came)
        variants = []
        for counted in ((), (deleted[0],), (deleted[1],), tuple(deleted)):
            variant = Counter(remaining)
            for post in counted:
                variant.update((t, bucket_start(post.created_at)) for t in post.tags)
            variants.append(dict(variant))
        assert buckets in variants
        assert per_tag == dict(Counter(t for (t, _), n in remaining.items()
                                       for _ in range(n)))
        # deletes were recorded for posts we hold only
        assert gone == {("bluesky", _stored("bluesky", p.uri)) for p in deleted}
        # every stream reported in, none is failing
        streams = {(h.source, h.stream) for h in health}
        assert len(streams) == 2 * 4 + 4 + 1
        assert all(h.last_success_at is not None for h in health)

        # `monitor trends` agrees, bucket by bucket
        since = (world.start - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
        trend = json.loads(monitor_cli(config, "trends", *TAGS, "--since", since,
                                       "--step", "5m", "--format", "json"))
        from_cli = {(p["tag"], datetime.fromisoformat(p["bucket"])): p["posts"]
                    for p in trend if p["posts"]}
        assert from_cli == buckets

        status = json.loads(monitor_cli(config, "status", "--format", "json"))
        assert {(s["source"], s["stream"]) for s in status} == streams
        # posts brought in: every stored one, and the deleted ones stored before it
        assert len(expected_keys) <= sum(s["posts"] for s in status) <= len(expected_keys) + 2
        (tmp_path / "status.txt").write_text(monitor_cli(config, "status"))

        # the log is one line per event, without tracebacks or post text
        assert "Traceback" not in output
        for sentence, _ in _SENTENCES:
            assert sentence not in output
    finally:
        engine.dispose()


@pytest.mark.timeout(60)
def test_sigterm_stops_the_service_within_seconds_while_a_poll_hangs(
        tmp_path: Path, world: World) -> None:
    masto = start_mastodon_fake(world, "a")
    jet = JetstreamFake()
    try:
        masto.faults.stall_next(50, seconds=30)  # every poll hangs
        db_url = f"sqlite:///{tmp_path}/monitor.db"
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "database": {"url": db_url},
            "privacy": {"hash_secret": "s" * 32},
            "http": {"contact": "t@example.org", "timeout": "60s"},
            "sources": [
                {"type": "mastodon", "instances": [masto.url], "interval": "1s", "jitter": "0s"},
                {"type": "jetstream", "hosts": [jet.url], "batch_interval": "0.2s"},
            ],
        }))
        service = Service(config, tmp_path / "service.log")
        wait_for(lambda: len(masto.api_requests("/timelines/tag")) >= 1
                 and jet.subscribers == 1, "a hanging poll", service)
        jet.publish_posts(world.bluesky_posts()[:5], noise=1)
        time.sleep(0.5)
        code, took = service.terminate(within=10)
        output = (tmp_path / "service.log").read_text()
        assert code == 0, output[-2000:]
        assert took < 5, f"SIGTERM took {took:.1f}s"
        assert "Traceback" not in output
        engine = make_engine(db_url)
        try:
            # the firehose batch in hand was committed before exiting
            assert scalar(engine, select(func.count()).select_from(posts)) == 5
            assert scalar(engine, select(cursors.c.value)
                          .where(cursors.c.source == "jetstream")) is not None
        finally:
            engine.dispose()
    finally:
        jet.stop()
        masto.stop()
