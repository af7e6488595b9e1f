"""`monitor tags add|remove|list` change what a running `monitor run` follows, within a poll.

The service runs as a real process against the Mastodon and Jetstream fakes on
loopback, following #metoo and #notallmen. Then #ididit is added and #notallmen
removed with the CLI: the new stream starts with its backfill (the fake's older
#ididit posts arrive), the removed stream stops (a new #notallmen-only post is
never fetched), Jetstream is restarted with the new filter from its cursor, and
nothing followed all along is lost or stored twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, func, select

from monitor.store.db import make_engine, migrate
from monitor.store.followed import effective_tags, read_changes, set_followed
from monitor.store.schema import cursors, post_tags, posts
from tests.fakes.data import World
from tests.fakes.jetstream import JetstreamFake
from tests.fakes.mastodon import start_mastodon_fake
from tests.post_keys import stored_key
from tests.test_end_to_end import MONITOR, ROOT, Service, scalar, wait_for


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MONITOR, *args, "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


def test_effective_tags_apply_changes_in_order(engine: Engine) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    set_followed(engine, "ididit", True, now)
    set_followed(engine, "notallmen", False, now)
    set_followed(engine, "ididit", True, now)  # twice: one row
    changes = read_changes(engine)
    assert [(c.tag, c.state) for c in changes] == [("ididit", "follow"),
                                                   ("notallmen", "unfollow")]
    assert effective_tags(["metoo", "notallmen"], changes) == ["metoo", "ididit"]
    set_followed(engine, "notallmen", True, now)
    assert effective_tags(["metoo", "notallmen"], read_changes(engine)) == [
        "metoo", "notallmen", "ididit"]


@pytest.mark.timeout(120)
def test_tags_change_in_a_running_service_within_one_poll(db_url: str, tmp_path: Path) -> None:
    world = World(seed=23, hours=2, mastodon_posts=60, bluesky_posts=0)
    masto = start_mastodon_fake(world, "a")
    jet = JetstreamFake()
    engine = make_engine(db_url)
    migrate(engine)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": db_url},
        "hashtags": ["metoo", "notallmen"],
        "web": {"enabled": False},
        "privacy": {"hash_secret": "t" * 32},
        "http": {"contact": "t@example.org", "timeout": "3s", "backoff_base": "0.05s",
                 "backoff_max": "0.5s", "per_host_min_interval": "0.005s"},
        "sources": [
            {"type": "mastodon", "instances": [masto.url], "interval": "0.5s",
             "jitter": "0s", "page_limit": 20, "backfill_pages": 50},
            {"type": "jetstream", "hosts": [jet.url], "rewind": "1s",
             "batch_interval": "0.2s"},
        ],
    }), encoding="utf-8")
    log = tmp_path / "service.log"
    service = Service(config, log)
    try:
        # stored keys are keyed pseudonyms of the platform keys (authors: hash): map back
        by_stored = {stored_key(platform, p.uri, "t" * 32): p.uri
                     for platform, made in (("mastodon", world.mastodon_posts("a")),
                                            ("bluesky", world.bluesky_posts()))
                     for p in made}

        def stored(tags: tuple[str, ...]) -> set[str]:
            for platform, made in (("mastodon", world.mastodon_posts("a")),
                                   ("bluesky", world.bluesky_posts())):
                for p in made:  # posts the test added since
                    by_stored.setdefault(stored_key(platform, p.uri, "t" * 32), p.uri)
            with engine.connect() as conn:
                keys = conn.execute(select(posts.c.key).join(post_tags)
                                    .where(post_tags.c.tag.in_(tags))).scalars()
                return {by_stored.get(k, k) for k in keys}

        before = {p.uri for p in world.mastodon_posts("a")
                  if {"metoo", "notallmen"} & set(p.tags)}
        wait_for(lambda: before <= stored(("metoo", "notallmen"))
                 and jet.subscribers == 1, "the first backfill", service)
        ididit_only = {p.uri for p in world.mastodon_posts("a")
                       if "ididit" in p.tags and not {"metoo", "notallmen"} & set(p.tags)}
        assert ididit_only and not ididit_only & stored(("ididit",))

        added = _cli(config, "tags", "add", "#IDidIt")
        assert added.returncode == 0, added.stderr
        assert "following #ididit" in added.stdout
        removed = _cli(config, "tags", "remove", "notallmen")
        assert removed.returncode == 0, removed.stderr
        changed_at = time.monotonic()

        # the new stream starts with its backfill: the older #ididit posts arrive
        wait_for(lambda: ididit_only <= stored(("ididit",)), "the #ididit backfill", service)
        assert time.monotonic() - changed_at < 10
        # (two CLI calls: applied together or one poll apart, each restarts the firehose)
        changes = ("followed tags changed: +ididit; -notallmen",
                   "followed tags changed: -notallmen")
        wait_for(lambda: any(c in log.read_text() for c in changes)
                 and len(jet.subscriptions) >= 1 + log.read_text().count("tags changed"),
                 "Jetstream restarted with the new tags", service)

        # the removed stream stopped; the kept one goes on
        gone = world.add_mastodon_post(["notallmen"])
        time.sleep(0.3)
        kept = world.add_mastodon_post(["metoo"])
        new = world.add_mastodon_post(["ididit"])
        wait_for(lambda: {kept.uri, new.uri} <= stored(("metoo", "ididit")),
                 "new posts of the followed tags", service)
        time.sleep(1.5)  # three more poll intervals
        assert gone.uri not in stored(("notallmen",))

        # the firehose filters for the new tags from its restart on
        bsky_new = world.add_bluesky_post(["ididit"])
        bsky_gone = world.add_bluesky_post(["notallmen"])
        jet.publish_posts([bsky_new, bsky_gone])
        wait_for(lambda: scalar(engine, select(cursors.c.value)
                                .where(cursors.c.source == "jetstream")) is not None
                 and int(scalar(engine, select(cursors.c.value)
                                .where(cursors.c.source == "jetstream"))) >= jet.last_time_us,
                 "the firehose batch", service)
        assert bsky_new.uri in stored(("ididit",))
        assert bsky_gone.uri not in stored(("notallmen",))

        listed = _cli(config, "tags", "list", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rows = {r["tag"]: r for r in json.loads(listed.stdout)}
        assert {t for t, r in rows.items() if r["followed"]} == {"metoo", "ididit"}
        assert rows["notallmen"]["change"] == "unfollow"
        assert rows["ididit"]["from"] == "monitor tags add"

        code, _ = service.terminate(within=10)
        output = log.read_text()
        assert code == 0, output[-3000:]
        assert "Traceback" not in output
        # nothing twice: every key once
        total = scalar(engine, select(func.count()).select_from(posts))
        distinct = scalar(engine, select(func.count(func.distinct(posts.c.key))))
        assert total == distinct
    finally:
        if service.alive():
            service.kill()
        engine.dispose()
        jet.stop()
        masto.stop()


def test_tags_cli_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path}/m.db"},
                                      "hashtags": ["metoo"]}), encoding="utf-8")
    assert _cli(config, "init-db").returncode == 0
    for args, expected in (
        (("tags", "add", "bad tag"), "expected a tag of letters, digits or '_'"),
        (("tags", "remove", "notallmen"), "not followed: notallmen (followed: metoo)"),
        (("tags", "remove", "metoo"), "cannot stop following every tag"),
    ):
        done = _cli(config, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert expected in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
