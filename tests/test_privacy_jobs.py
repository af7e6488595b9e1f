"""The privacy jobs in the running service, against the fakes, on SQLite and PostgreSQL:
the re-check applies what vanished, retention leaves the trends, a deletion that
comes before its post wins."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from monitor.config import Config
from monitor.service import Service
from monitor.store.schema import cursors, deletions, posts, stream_health, tag_buckets
from monitor.wiring import build_service
from tests.fakes.bluesky import BlueskyFake, start_bluesky_fake
from tests.fakes.data import World
from tests.fakes.jetstream import JetstreamFake, commit_delete
from tests.fakes.mastodon import MastodonFake
from tests.post_keys import stored_key
from tests.test_service import (
    FAST_HTTP,
    Running,
    jetstream_source,
    rows,
    scalar,
)
from tests.test_service import jetstream as jetstream
from tests.test_service import mastodon as mastodon
from tests.test_service import world as world


@pytest.fixture
def bluesky(world: World) -> Iterator[BlueskyFake]:
    fake = start_bluesky_fake(world)
    yield fake
    fake.stop()


def config(db_url: str, sources: list[dict[str, Any]], **privacy: Any) -> Config:
    return Config(database={"url": db_url},
                  privacy={"hash_secret": "k" * 32, **privacy}, http=FAST_HTTP,
                  sources=sources)


def sources(mastodon: MastodonFake, bluesky: BlueskyFake) -> list[dict[str, Any]]:
    return [
        {"type": "mastodon", "instances": [mastodon.url], "interval": "0.3s", "jitter": "0s"},
        {"type": "bluesky_search", "appview": bluesky.url, "pds": bluesky.url,
         "interval": "0.3s", "jitter": "0s"},
    ]


async def keys(engine: Engine, world: World) -> set[str]:
    """The stored keys, each as the platform key it pseudonymises (issue 12)."""
    _KNOWN.update((sk(p.platform, p.uri), p.uri) for p in world.posts())
    return {_KNOWN.get(r.key, r.key) for r in await rows(engine, select(posts.c.key))}


_KNOWN: dict[str, str] = {}  # stored key → platform key (deleted posts' too)


def sk(platform: str, key: str) -> str:
    return stored_key(platform, key, "k" * 32)


async def test_recheck_applies_posts_that_vanished(
        engine: Engine, db_url: str, world: World, mastodon: MastodonFake,
        bluesky: BlueskyFake) -> None:
    # statuses posted on the fake instance itself: it is their origin and answers for them
    local = [world.add_mastodon_post(["metoo"], origin=mastodon.host) for _ in range(3)]
    cfg = config(db_url, sources(mastodon, bluesky), recheck="7d", recheck_every="0.3s")
    run = Running(Service(cfg, engine))
    wanted = {p.uri for p in world.mastodon_posts("a")} | {p.uri for p in world.bluesky_posts()}

    async def all_stored() -> bool:
        return wanted <= await keys(engine, world)

    await run.until(all_stored)
    gone = [local[1], world.bluesky_posts()[3]]
    for post in gone:
        world.delete(post)

    async def applied() -> bool:
        return not ({p.uri for p in gone} & await keys(engine, world))

    await run.until(applied)
    await run.finish()
    assert await keys(engine, world) == wanted - {p.uri for p in gone}
    tombs = await rows(engine, select(deletions.c.platform, deletions.c.key,
                                      deletions.c.applied_at))
    assert {(t.platform, t.key) for t in tombs} == {("mastodon", sk("mastodon", local[1].uri)),
                                                    ("bluesky", sk("bluesky", gone[1].uri))}
    assert all(t.applied_at is not None for t in tombs)
    health = {(h.source, h.stream): h for h in await rows(engine, select(stream_health))}
    # the re-check is its own stream in `monitor status`
    assert {("recheck", "mastodon#*"), ("recheck", "bluesky-search#*")} <= set(health)
    assert health[("recheck", "bluesky-search#*")].last_success_at is not None


async def test_retention_job_deletes_old_rows_and_keeps_the_trends(
        engine: Engine, db_url: str, world: World, mastodon: MastodonFake,
        bluesky: BlueskyFake) -> None:
    expected = {p.uri for p in world.mastodon_posts("a")} | {p.uri for p in world.bluesky_posts()}
    first = Running(build_service(config(db_url, sources(mastodon, bluesky), store_text=True),
                                  engine))

    async def all_stored() -> bool:
        return await keys(engine, world) == expected

    await first.until(all_stored)
    await first.finish()
    trends = await rows(engine, select(tag_buckets).order_by(tag_buckets.c.tag,
                                                             tag_buckets.c.bucket_start))
    assert await scalar(engine, select(func.count()).select_from(posts)
                        .where(posts.c.text.is_not(None))) == len(expected)

    cfg = config(db_url, sources(mastodon, bluesky), store_text=True,
                 retention={"posts": "90m", "text": "1m", "every": "0.3s"})
    cutoff = datetime.now(UTC) - timedelta(minutes=90)
    young = {p.uri for p in world.posts() if p.uri in expected and p.created_at > cutoff}
    assert 0 < len(young) < len(expected)
    second = Running(build_service(cfg, engine))

    async def trimmed() -> bool:
        with_text = await scalar(engine, select(func.count()).select_from(posts)
                                 .where(posts.c.text.is_not(None)))
        return bool(await keys(engine, world) == young and with_text == 0)

    await second.until(trimmed)
    await second.finish()
    # every post ever collected is still counted, bucket by bucket
    assert await rows(engine, select(tag_buckets).order_by(
        tag_buckets.c.tag, tag_buckets.c.bucket_start)) == trends


async def test_deletion_before_its_post_wins_in_the_service(
        engine: Engine, db_url: str, world: World,
        jetstream: JetstreamFake) -> None:
    run = Running(Service(config(db_url, [jetstream_source(jetstream.url)]), engine))
    await asyncio.to_thread(jetstream.wait_for_subscribers, 1)
    early = world.bluesky_posts()[:2]
    # deleted before the firehose shows the post (a relay's late copy, a replay)
    last = (await asyncio.to_thread(
        jetstream.publish, [commit_delete(p.did, p.rkey) for p in early]))[-1]

    async def deletes_handled() -> bool:
        value = await scalar(engine, select(cursors.c.value))
        return value is not None and int(value) >= last

    await run.until(deletes_handled)  # in their own batch, before any post
    await asyncio.to_thread(jetstream.publish_posts, world.bluesky_posts())
    wanted = {p.uri for p in world.bluesky_posts()[2:]}

    async def stored() -> bool:
        return await keys(engine, world) == wanted

    await run.until(stored)
    await asyncio.sleep(0.3)
    await run.finish()
    assert await keys(engine, world) == wanted
    # a firehose's deletions of posts never held are remembered, not stored
    assert await scalar(engine, select(func.count()).select_from(deletions)) == 0
