"""The privacy audit: run the service end to end against the fakes with ``store_text: false``
and ``authors: hash``, then look everywhere the service writes or answers — every table,
every log line, every export format, the email and MQTT payloads, ``/metrics`` and the JSON
API, and what the CLI prints — for any post text, author handle or the secret the run used.

No exception: a post's platform id, which on Mastodon and Bluesky contains the account
name or DID, is stored as a keyed pseudonym (``posts.key``, ``deletions.key``) and its link
(``posts.url``) is not stored (README "What we keep"); ``monitor forget --post`` still finds
a post by its link.

The second run (retention of a few seconds) shows text and author pseudonyms gone from the
old rows while the trends are exactly the ones without retention.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import MetaData, func, select
from typer.testing import CliRunner

from monitor.commands import app, register_all
from monitor.store.buckets import bucket_start
from monitor.store.db import make_engine
from monitor.store.schema import posts, tag_buckets
from tests.conftest import MQTT_HOST, MQTT_PORT, require_service
from tests.fakes.data import _SENTENCES, SeedPost, World
from tests.fakes.jetstream import JetstreamFake
from tests.fakes.mastodon import MastodonFake, start_mastodon_fake
from tests.notify.conftest import SmtpServer, free_port
from tests.test_end_to_end import MONITOR, ROOT, Service, scalar, wait_for

SECRET = "audit-key-" + uuid.uuid4().hex  # the author key of this run, kept outside the DB


class MqttTap:
    """Every MQTT message under a prefix, collected by a real subscriber in a thread."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self.ready.wait(10), "MQTT subscriber did not connect"

    async def _main(self) -> None:
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT,
                                  identifier=f"audit-{uuid.uuid4().hex[:8]}") as client:
            await client.subscribe(f"{self.prefix}/#", qos=1)
            self.ready.set()
            async for message in client.messages:
                payload = message.payload
                self.messages.append((str(message.topic), payload if isinstance(
                    payload, bytes) else str(payload).encode()))


def _needles(world: World) -> dict[str, str]:
    """Every post text, handle and the secret the fakes served, mapped to what it is."""
    found: dict[str, str] = {SECRET: "the author key"}
    for sentence, _ in _SENTENCES:
        found[sentence] = "post text"
    for post in world.posts():
        found[post.text] = "post text"
        if post.platform == "mastodon":
            found[f"{post.author}@origin.example"] = "handle"
            found[f"/@{post.author}/"] = "handle"
            found[f"/users/{post.author}/"] = "handle"
        else:
            found[post.author] = "handle (DID)"
    return found


def _leaks(text: str, needles: dict[str, str]) -> list[str]:
    return sorted({f"{kind}: {needle[:40]!r}" for needle, kind in needles.items()
                   if needle in text})


def _tables(db_url: str) -> Iterator[tuple[str, str, str]]:
    """(table, column, value as text) of every non-null cell of every table."""
    engine = make_engine(db_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    for column, value in row._mapping.items():
                        if value is not None:
                            yield table.name, str(column), (
                                json.dumps(value, default=str) if isinstance(value, dict | list)
                                else str(value))
    finally:
        engine.dispose()


def _config(path: Path, db_url: str, masto: MastodonFake, jet: JetstreamFake, smtp: SmtpServer,
            prefix: str, web_port: int, **privacy: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "database": {"url": db_url},
        "hashtags": ["metoo", "notallmen", "howiwillchange", "ididit"],
        "privacy": {"store_text": False, "authors": "hash", "hash_secret": SECRET, **privacy},
        "logging": {"level": "DEBUG"},
        "http": {"contact": "audit@example.org", "timeout": "3s", "max_retries": 1,
                 "backoff_base": "0.05s", "backoff_max": "0.5s",
                 "per_host_min_interval": "0.005s", "per_host_concurrency": 4},
        "sources": [
            {"type": "mastodon", "instances": [masto.url], "interval": "0.5s", "jitter": "0.1s",
             "page_limit": 40, "backfill_pages": 50},
            {"type": "jetstream", "hosts": [jet.url], "rewind": "1s", "batch_size": 50,
             "batch_interval": "0.2s"},
        ],
        "rules": [{"kind": "flatline", "name": "silent", "silent_for": "1s", "for": "0s"}],
        "notify": {
            "email": {"enabled": True, "smtp": {"host": "127.0.0.1", "port": smtp.port,
                                                "security": "none", "timeout": "5s"},
                      "recipients": ["desk@example.org"],
                      "sender": "Monitor <alerts@example.org>"},
            "mqtt": {"enabled": True, "host": MQTT_HOST, "port": MQTT_PORT, "prefix": prefix},
            "grouping": {"group_wait": "0s", "group_interval": "1s"},
            "poll_interval": "0.2s",
        },
        "web": {"enabled": True, "host": "127.0.0.1", "port": web_port},
    }), encoding="utf-8")
    return path


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode("utf-8"))


def _cli(config: Path, *args: str) -> str:
    import os
    import subprocess

    done = subprocess.run([*MONITOR, *args, "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def _expected_buckets(world: World) -> dict[tuple[str, Any], int]:
    counts: Counter[tuple[str, Any]] = Counter()
    for post in world.posts():
        if post.platform == "mastodon" and "a" not in post.instances:
            continue
        counts.update((t, bucket_start(post.created_at)) for t in post.tags)
    return dict(counts)


def _collect(config: Path, db_url: str, world: World, jet: JetstreamFake, log: Path,
             bluesky: list[SeedPost]) -> Service:
    """Start the service and wait until it holds every post the fakes serve."""
    service = Service(config, log)
    wait_for(lambda: jet.subscribers == 1, "the Jetstream subscription", service)
    jet.publish_posts(bluesky, noise=3, seed=4)
    expected = sum(1 for p in world.posts()
                   if p.platform == "bluesky" or "a" in p.instances)
    engine = make_engine(db_url)
    try:
        wait_for(lambda: scalar(engine, select(func.count()).select_from(posts)) >= expected,
                 "every post", service, timeout=60)
    finally:
        engine.dispose()
    return service


@pytest.mark.timeout(240)
def test_nothing_personal_leaves_or_stays_beyond_the_documented_columns(
        db_url: str, tmp_path: Path) -> None:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    world = World(seed=23, hours=2, mastodon_posts=40, bluesky_posts=25)
    needles = _needles(world)
    masto, jet, smtp = start_mastodon_fake(world, "a"), JetstreamFake(), SmtpServer()
    smtp.start()
    prefix = f"audit-{uuid.uuid4().hex[:8]}"
    tap = MqttTap(prefix)
    web_port = free_port()
    config = _config(tmp_path / "config.yaml", db_url, masto, jet, smtp, prefix, web_port)
    log = tmp_path / "service.log"
    seen: dict[str, str] = {}  # where → what it said
    try:
        first = _collect(config, db_url, world, jet, log, world.bluesky_posts())
        base = f"http://127.0.0.1:{web_port}"
        for path in ("/api/tags", "/api/series?tag=metoo&since=30d&step=1h",
                     "/api/top?since=30d", "/api/cotags?tag=metoo&since=30d",
                     "/api/relate?a=metoo&b=notallmen&since=30d", "/api/alerts?state=all",
                     "/api/posts?tag=metoo&limit=100", "/api/posts?tag=notallmen&limit=100",
                     "/api/health", "/metrics", "/"):
            seen[f"GET {path}"] = _get(base + path)
        assert '"url": null' in seen["GET /api/posts?tag=metoo&limit=100"].replace(
            '"url":null', '"url": null')
        code, _ = first.terminate(within=10)
        assert code == 0
        # the streams are silent now: the flatline rule fires, and the next run delivers it
        seen["monitor evaluate"] = _cli(config, "evaluate")
        second = Service(config, log)
        wait_for(lambda: bool(smtp.messages) and any("/alerts/" in t for t, _ in tap.messages),
                 "the alert by email and MQTT", second, timeout=60)
        second.terminate(within=10)
        for i, message in enumerate(smtp.messages):
            seen[f"email {i}"] = message.as_string()
        for topic, payload in tap.messages:
            seen[f"mqtt {topic}"] = payload.decode("utf-8", "replace")
        # every export format, and what the read commands print (in-process: a fresh
        # interpreter per command costs seconds)
        register_all(app)
        runner = CliRunner()
        for fmt in ("csv", "jsonl", "parquet"):
            out = tmp_path / f"posts.{fmt}"
            result = runner.invoke(app, ["export", "posts", "--since", "30d", "--format", fmt,
                                         "--out", str(out), "--config", str(config)])
            assert result.exit_code == 0, result.output
            seen[f"export posts {fmt} (cli)"] = result.output
            if fmt == "parquet":
                table = pq.read_table(out)
                seen["export posts parquet"] = json.dumps(table.to_pylist(), default=str) + \
                    json.dumps({k.decode(): v.decode() for k, v in
                                (table.schema.metadata or {}).items()})
            else:
                seen[f"export posts {fmt}"] = out.read_text(encoding="utf-8")
        seen["export posts jsonl sidecar"] = (tmp_path / "posts.jsonl.meta.json").read_text()
        for args in (("export", "series", "--tag", "metoo", "--since", "30d", "--out", "-"),
                     ("status",), ("trends", "metoo", "--since", "30d"), ("alerts",),
                     ("top", "--since", "30d"), ("outbox",)):
            result = runner.invoke(app, [*args, "--config", str(config)])
            assert result.exit_code == 0, result.output
            seen["monitor " + " ".join(args)] = result.output
        # erasure on request is logged and printed without the handle
        victim = next(p for p in world.mastodon_posts() if "a" in p.instances)
        seen["monitor forget"] = _cli(config, "forget", "--author",
                                      f"{victim.author}@origin.example", "--platform",
                                      "mastodon")
        assert "removed" in seen["monitor forget"]
        # one post by its link (the database holds neither the link nor the uri)
        other = next(p for p in world.mastodon_posts() if "a" in p.instances
                     and p.author != victim.author)
        seen["monitor forget --post"] = _cli(
            config, "forget", "--post", f"https://origin.example/@{other.author}/{other.n:08d}")
        assert "removed 1 posts" in seen["monitor forget --post"]
        seen["monitor access"] = _cli(config, "access", "--author",
                                      f"{other.author}@origin.example", "--platform",
                                      "mastodon", "--format", "json")
        assert '"posts"' in seen["monitor access"]
        seen["service log"] = log.read_text(encoding="utf-8")
    finally:
        smtp.stop()
        jet.stop()
        masto.stop()

    assert seen["service log"].count("\n") > 20  # DEBUG: the log said a lot, and nothing personal
    assert smtp.messages and tap.messages
    leaks = {where: _leaks(text, needles) for where, text in seen.items()}
    assert {where: found for where, found in leaks.items() if found} == {}

    in_tables: dict[tuple[str, str], list[str]] = {}
    for table, column, value in _tables(db_url):
        found = _leaks(value, needles)
        if found:
            in_tables.setdefault((table, column), []).extend(found)
    # no handle, DID, text or key anywhere: not even in post keys, tombstones or links
    assert in_tables == {}
    stored = [(table, column, value) for table, column, value in _tables(db_url)
              if (table, column) in {("posts", "key"), ("deletions", "key")}]
    assert stored and all(value.startswith("pk1:") for _, _, value in stored)
    assert not [v for t, c, v in _tables(db_url) if (t, c) == ("posts", "url")]


@pytest.mark.timeout(180)
def test_retention_of_seconds_clears_old_rows_and_leaves_the_trends(
        db_url: str, tmp_path: Path) -> None:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    world = World(seed=29, hours=2, mastodon_posts=30, bluesky_posts=20)
    masto, jet, smtp = start_mastodon_fake(world, "a"), JetstreamFake(), SmtpServer()
    smtp.start()
    prefix = f"audit-{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path / "config.yaml", db_url, masto, jet, smtp, prefix, free_port(),
                     store_text=True, retention={"text": "2s", "authors": "2s", "every": "1s"})
    try:
        service = _collect(config, db_url, world, jet, tmp_path / "service.log",
                           world.bluesky_posts())
        engine = make_engine(db_url)
        try:
            wait_for(lambda: scalar(engine, select(func.count()).select_from(posts).where(
                posts.c.text.is_not(None) | posts.c.author.is_not(None))) == 0,
                "retention to clear text and authors", service, timeout=30)
            service.terminate(within=10)
            with engine.connect() as conn:
                buckets = {(r.tag, r.bucket_start): r.posts for r in conn.execute(
                    select(tag_buckets.c.tag, tag_buckets.c.bucket_start, tag_buckets.c.posts))}
                kept = conn.execute(select(func.count()).select_from(posts)).scalar_one()
        finally:
            engine.dispose()
    finally:
        smtp.stop()
        jet.stop()
        masto.stop()
    # the rows stay (retention.posts is forever), the trends are exactly the fakes' posts
    assert kept == sum(1 for p in world.posts() if p.platform == "bluesky" or "a" in p.instances)
    assert buckets == _expected_buckets(world)
