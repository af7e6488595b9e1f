"""Mastodon's streaming ``delete`` and ``status.update``: from the fake's SSE stream to the
stored posts and their buckets (issue 13), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from monitor.config import Config
from monitor.models import Batch
from monitor.service import Service
from monitor.sources.http import HttpClient
from monitor.sources.mastodon import MastodonCollector
from monitor.sources.mastodon_live import MastodonLiveCollector
from monitor.sources.registry import build_sources
from monitor.store.buckets import bucket_start
from monitor.store.schema import deletions, post_tags, posts, tag_buckets
from tests.fakes.data import World
from tests.fakes.mastodon import MastodonFake
from tests.post_keys import stored_key

SOURCE = {"type": "mastodon", "tags": ["metoo"], "streaming": True, "backfill_pages": 50}
FAST_HTTP = {"contact": "tests@example.org", "timeout": "3s", "max_retries": 1,
             "backoff_base": "0.05s", "backoff_max": "0.3s", "per_host_min_interval": "0s"}


async def _wait_for(predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def collectors(config: Config, http: HttpClient) -> tuple[MastodonCollector,
                                                          MastodonLiveCollector]:
    polled, live = build_sources(config, http)
    assert isinstance(polled, MastodonCollector) and isinstance(live, MastodonLiveCollector)
    return polled, live


async def test_stream_events_become_deletions_and_edits(
    world: World, masto_a: MastodonFake
) -> None:
    config = Config(sources=[{**SOURCE, "instances": [masto_a.url]}], http=FAST_HTTP)
    async with HttpClient(config.http) as http:
        polled, live = collectors(config, http)
        assert live.polled is polled  # one id → uri map for both
        stream = polled.streams()[0]
        seen = [p for b in [b async for b in polled.poll(stream, None)] for p in b.posts]
        got: list[Batch] = []

        async def sink(batch: Batch) -> None:
            got.append(batch)

        task = asyncio.create_task(live.run(None, sink))
        try:
            await _wait_for(lambda: bool(live.connected))
            # seen only by the poll: its local id is resolved through the shared map
            old = world.by_uri(seen[0].key)
            masto_a.delete(old)
            await _wait_for(lambda: any(b.deleted for b in got))
            edited = world.by_uri(seen[1].key)
            masto_a.edit(edited, "Edited: this is awful.", ["metoo", "notallmen"])
            await _wait_for(lambda: any(b.edited for b in got))
            # a status this process never saw: its key cannot be known
            stranger = world.add_mastodon_post(["ididit"], instances=("a",))
            masto_a.delete(stranger)
            await _wait_for(lambda: live.unresolved_deletes == 1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [k for b in got for k in b.deleted] == [old.uri]
    [post] = [p for b in got for p in b.edited]
    assert post.key == edited.uri
    assert {t.lower() for t in post.tags} == {"metoo", "notallmen"}
    assert post.html is not None and "Edited: this is awful." in post.html
    assert not any(b.posts for b in got)  # an edit is not a new post


def _recount(engine: Engine) -> dict[tuple[str, datetime], tuple[int, int, float]]:
    """(tag, bucket) → (posts, scored, compound sum) from the stored posts themselves."""
    acc: dict[tuple[str, datetime], list[Any]] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(post_tags.c.tag, posts.c.created_at, posts.c.compound)
                            .join(posts, posts.c.id == post_tags.c.post_id)).all()
    for tag, created, compound in rows:
        row = acc.setdefault((tag, bucket_start(created)), [0, 0, 0.0])
        row[0] += 1
        row[1] += compound is not None
        row[2] += compound or 0.0
    return {k: (v[0], v[1], round(v[2], 6)) for k, v in acc.items()}


def _buckets(engine: Engine) -> dict[tuple[str, datetime], tuple[int, int, float]]:
    b = tag_buckets.c
    with engine.connect() as conn:
        rows = conn.execute(select(b.tag, b.bucket_start, b.posts, b.scored,
                                   b.compound_sum)).all()
    return {(r.tag, r.bucket_start): (r.posts, r.scored, round(r.compound_sum, 6))
            for r in rows if r.posts}


async def test_edits_and_deletes_reach_the_store_and_trends_match_the_posts(
    world: World, masto_a: MastodonFake, engine: Engine, db_url: str
) -> None:
    config = Config(database={"url": db_url}, privacy={"hash_secret": "k" * 32,
                                                       "deletions": "recount"},
                    http=FAST_HTTP, sources=[{**SOURCE, "instances": [masto_a.url],
                                              "tags": ["metoo", "notallmen"]}])
    service = Service(config, engine)
    async with HttpClient(config.http) as http:
        polled, live = collectors(config, http)
        for stream in polled.streams():
            async for batch in polled.poll(stream, None):
                await service.store(batch)
        # stored keys are keyed pseudonyms (issue 12): read back as the status uris
        back = {sk(p.uri): p.uri for p in world.mastodon_posts()}
        with engine.connect() as conn:
            stored = {back[k] for k in conn.execute(select(posts.c.key)).scalars()}
        assert _buckets(engine) == _recount(engine)
        target = next(p for p in world.mastodon_posts("a")
                      if p.uri in stored and p.tags == ("metoo",) and p.lang == "en")
        gone = next(p for p in world.mastodon_posts("a")
                    if p.uri in stored and p.uri != target.uri and "metoo" in p.tags)

        task = asyncio.create_task(live.run(None, service.sink))
        try:
            await _wait_for(lambda: len(live.connected) == 2)

            def tags_of(key: str) -> set[str]:
                with engine.connect() as conn:
                    return set(conn.execute(select(post_tags.c.tag).join(posts)
                                            .where(posts.c.key == sk(key))).scalars())

            masto_a.edit(target, "I am furious, this is horrible and disgusting.",
                         ["metoo", "notallmen"])
            await _wait_for(lambda: tags_of(target.uri) == {"metoo", "notallmen"})
            masto_a.delete(gone)

            def removed() -> bool:
                with engine.connect() as conn:
                    return conn.execute(select(deletions.c.key)).scalars().all() == [
                        sk(gone.uri)]

            await _wait_for(removed)
            await asyncio.sleep(0.3)  # the edit reached two streams: both are applied
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    with engine.connect() as conn:
        row = conn.execute(select(posts).where(posts.c.key == sk(target.uri))).one()
        keys = {back[k] for k in conn.execute(select(posts.c.key)).scalars()}
    assert row.compound is not None and row.compound < -0.5  # re-scored from the new text
    assert row.lang == "en" and row.text is None  # store_text: false still holds
    assert gone.uri not in keys and len(keys) == len(stored) - 1
    # the trends are the stored posts: the edit moved the post into #notallmen
    assert _buckets(engine) == _recount(engine)
    counts = Counter(tag for (tag, _), (n, _, _) in _buckets(engine).items() for _ in range(n))
    assert counts["notallmen"] == sum(1 for k in keys for t in tags_of_world(world, k, target)
                                      if t == "notallmen")


def sk(uri: str) -> str:
    return stored_key("mastodon", uri, "k" * 32)


def tags_of_world(world: World, key: str, edited: Any) -> tuple[str, ...]:
    """The tags a stored post has now: the world's, or the edit's for the edited one."""
    if key == edited.uri:
        return ("metoo", "notallmen")
    return world.by_uri(key).tags


@pytest.fixture
def world() -> World:
    return World(seed=23, mastodon_posts=40, bluesky_posts=0)
