"""The service in-process against the fakes on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from monitor.config import Config
from monitor.service import Service, StoredBatch
from monitor.store.schema import cursors, deletions, posts, stream_health
from tests.fakes.data import World
from tests.fakes.jetstream import JetstreamFake, commit_delete, noise_events
from tests.fakes.mastodon import MastodonFake, start_mastodon_fake
from tests.post_keys import stored_key

FAST_HTTP = {"contact": "tests@example.org", "timeout": "3s", "max_retries": 1,
             "backoff_base": "0.05s", "backoff_max": "0.3s", "per_host_min_interval": "0.01s"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(db_url: str, sources: list[dict[str, Any]]) -> Config:
    return Config(database={"url": db_url}, privacy={"hash_secret": "k" * 32},
                  http=FAST_HTTP, sources=sources)


def jetstream_source(*hosts: str) -> dict[str, Any]:
    return {"type": "jetstream", "hosts": list(hosts), "batch_interval": "0.1s", "rewind": "1s"}


@pytest.fixture
def jetstream() -> Iterator[JetstreamFake]:
    fake = JetstreamFake()
    yield fake
    fake.stop()


@pytest.fixture
def world() -> World:
    return World(seed=31, mastodon_posts=30, bluesky_posts=20)


@pytest.fixture
def mastodon(world: World) -> Iterator[MastodonFake]:
    fake = start_mastodon_fake(world, "a")
    yield fake
    fake.stop()


class Running:
    """Service.run() in a task of the test's event loop."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(service.run(self.stop))

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if self.task.done():
                self.task.result()
                raise AssertionError("the service stopped on its own")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the service")
            await asyncio.sleep(0.05)

    async def finish(self, within: float = 5.0) -> float:
        started = time.monotonic()
        self.stop.set()
        await asyncio.wait_for(self.task, within)
        return time.monotonic() - started


async def scalar(engine: Engine, stmt: Any) -> Any:
    def run() -> Any:
        with engine.connect() as conn:
            return conn.execute(stmt).scalar()
    return await asyncio.to_thread(run)


async def rows(engine: Engine, stmt: Any) -> list[Any]:
    def run() -> list[Any]:
        with engine.connect() as conn:
            return list(conn.execute(stmt).all())
    return await asyncio.to_thread(run)


async def test_polled_and_streaming_sources_fill_the_database(
        engine: Engine, db_url: str, world: World, mastodon: MastodonFake,
        jetstream: JetstreamFake) -> None:
    config = make_config(db_url, [
        {"type": "mastodon", "instances": [mastodon.url], "interval": "0.5s", "jitter": "0s"},
        jetstream_source(jetstream.url),
    ])
    service = Service(config, engine)
    stored: list[StoredBatch] = []

    async def hook(batch: StoredBatch) -> None:
        stored.append(batch)

    service.add_after_store("record", hook)
    run = Running(service)
    await asyncio.to_thread(jetstream.wait_for_subscribers, 1)
    bluesky = world.bluesky_posts()
    await asyncio.to_thread(jetstream.publish_posts, bluesky, noise=3)
    # deletes: one of ours (recorded, the post removed), one of a post we never stored
    # (not worth a row)
    await asyncio.to_thread(jetstream.publish, [commit_delete(bluesky[0].did, bluesky[0].rkey),
                                                commit_delete("did:plc:stranger", "3lzzz")])
    # instance "a" only: posts federated to "b" alone are not ours in this test
    # stored keys are keyed pseudonyms under authors: hash (issue 12)
    expected = {("mastodon", stored_key("mastodon", p.uri)) for p in world.mastodon_posts("a")} | {
        ("bluesky", stored_key("bluesky", p.uri)) for p in bluesky}

    async def complete() -> bool:
        n = await scalar(engine, select(func.count()).select_from(posts))
        gone = await scalar(engine, select(func.count()).select_from(deletions))
        return bool(n == len(expected) - 1 and gone == 1)

    await run.until(complete)
    took = await run.finish()
    assert took < 5

    got = {(r.platform, r.key) for r in await rows(engine, select(posts.c.platform, posts.c.key))}
    gone = ("bluesky", stored_key("bluesky", bluesky[0].uri))
    assert got == expected - {gone}
    assert [tuple(r) for r in await rows(engine, select(deletions.c.platform, deletions.c.key))] \
        == [gone]
    # the hook saw every new post exactly once (the deleted one too, unless its
    # delete came in the same batch: then it was never stored)
    assert sum(b.result.inserted for b in stored) in (len(expected), len(expected) - 1)
    # text is not kept by default, authors are pseudonymised
    sample = await rows(engine, select(posts.c.text, posts.c.author).limit(5))
    assert all(r.text is None and r.author and not r.author.startswith("did:") for r in sample)
    # health: every stream ran and none failed; the cursor of the firehose was saved
    health = await rows(engine, select(stream_health))
    assert {h.source for h in health} == {"mastodon", "jetstream"}
    assert all(h.last_success_at is not None and h.fetch_errors == 0 for h in health)
    jet_cursor = await scalar(engine, select(cursors.c.value)
                              .where(cursors.c.source == "jetstream"))
    assert int(jet_cursor) == jetstream.last_time_us


async def test_an_unreachable_source_is_recorded_and_the_rest_keeps_running(
        engine: Engine, db_url: str, jetstream: JetstreamFake) -> None:
    dead_http = f"http://127.0.0.1:{free_port()}"
    dead_ws = f"ws://127.0.0.1:{free_port()}/subscribe"
    config = make_config(db_url, [
        {"type": "mastodon", "instances": [dead_http], "tags": ["metoo"], "interval": "0.3s",
         "jitter": "0s"},
        jetstream_source(dead_ws),
        jetstream_source(jetstream.url),
    ])
    run = Running(Service(config, engine))
    await asyncio.to_thread(jetstream.wait_for_subscribers, 1)
    world = World(seed=2, mastodon_posts=0, bluesky_posts=10)
    await asyncio.to_thread(jetstream.publish_posts, world.bluesky_posts(), noise=1)

    async def both_failed_twice_and_posts_in() -> bool:
        errors = await rows(engine, select(stream_health.c.source, stream_health.c.fetch_errors)
                            .where(stream_health.c.fetch_errors >= 2))
        n = await scalar(engine, select(func.count()).select_from(posts))
        return len(errors) == 2 and n == 10

    await run.until(both_failed_twice_and_posts_in)
    assert not run.task.done()
    await run.finish()
    health = {(h.source, h.stream): h for h in await rows(engine, select(stream_health))}
    dead_port = dead_http.rsplit(":", 1)[1]
    masto = health[("mastodon", f"127.0.0.1:{dead_port}#metoo")]
    assert masto.last_success_at is None
    assert "connection refused" in masto.last_error
    dead_jet = health[("jetstream", dead_ws.split("/")[2] + "#*")]
    assert "connection refused" in dead_jet.last_error and dead_jet.last_success_at is None
    live = health[("jetstream", f"127.0.0.1:{jetstream.port}#*")]
    assert live.fetch_errors == 0 and live.posts_collected == 10


async def test_periodic_and_background_jobs_survive_their_failures(
        engine: Engine, db_url: str) -> None:
    service = Service(make_config(db_url, []), engine)
    calls: list[str] = []

    async def flaky_periodic() -> None:
        calls.append("periodic")
        if calls.count("periodic") == 1:
            raise RuntimeError("first run fails")

    async def flaky_background() -> None:
        calls.append("background")
        if calls.count("background") < 3:
            raise ConnectionError("broker went away")
        await asyncio.Event().wait()  # then runs until cancelled

    service.add_periodic("flaky", timedelta(seconds=0.1), flaky_periodic)
    service.add_background("consumer", flaky_background)
    with pytest.raises(ValueError, match="interval must be positive"):
        service.add_periodic("bad", timedelta(0), flaky_periodic)
    run = Running(service)

    async def enough() -> bool:
        return calls.count("periodic") >= 3 and calls.count("background") == 3

    await run.until(enough)
    assert await run.finish() < 2


async def test_stop_returns_quickly_while_a_poll_is_stalled(
        engine: Engine, db_url: str, mastodon: MastodonFake) -> None:
    mastodon.faults.stall_next(20, seconds=30)
    config = make_config(db_url, [{"type": "mastodon", "instances": [mastodon.url],
                                   "tags": ["metoo"], "interval": "5s", "jitter": "0s"}])
    run = Running(Service(config, engine))

    async def stalled() -> bool:
        return len(mastodon.api_requests("/timelines/tag")) >= 1

    await run.until(stalled)
    assert await run.finish() < 3
    # nothing half-written: no cursor was saved for the cancelled poll
    assert await scalar(engine, select(func.count()).select_from(cursors)) == 0


async def test_deletions_of_unknown_posts_are_not_recorded(
        engine: Engine, db_url: str, jetstream: JetstreamFake) -> None:
    config = make_config(db_url, [jetstream_source(jetstream.url)])
    run = Running(Service(config, engine))
    await asyncio.to_thread(jetstream.wait_for_subscribers, 1)
    import random

    noise = noise_events(random.Random(3), 200)
    last = (await asyncio.to_thread(jetstream.publish, noise))[-1]

    async def caught_up() -> bool:
        value = await scalar(engine, select(cursors.c.value))
        return value is not None and int(value) == last

    await run.until(caught_up)
    await run.finish()
    assert any(e["kind"] == "commit" and e["commit"]["operation"] == "delete" for e in noise)
    assert await scalar(engine, select(func.count()).select_from(deletions)) == 0
    assert await scalar(engine, select(func.count()).select_from(posts)) == 0
    health = (await rows(engine, select(stream_health)))[0]
    assert health.last_success_at > datetime.now(UTC) - timedelta(minutes=1)


async def test_a_store_failure_loses_nothing_once_the_database_is_back(
        engine: Engine, db_url: str, jetstream: JetstreamFake) -> None:
    """The posts table disappears mid-run (a real failure, no mock): the firehose batch is
    not stored, the failure is in health, and after the table is back the consumer restarts
    from its saved cursor and stores what was missed."""
    from sqlalchemy import text

    config = make_config(db_url, [jetstream_source(jetstream.url)])
    run = Running(Service(config, engine))
    await asyncio.to_thread(jetstream.wait_for_subscribers, 1)
    world = World(seed=8, mastodon_posts=0, bluesky_posts=20)
    first, second = world.bluesky_posts()[:10], world.bluesky_posts()[10:]
    await asyncio.to_thread(jetstream.publish_posts, first, noise=1)

    async def stored(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool(await scalar(engine, select(func.count()).select_from(posts)) == n)
        return check

    await run.until(await stored(10))

    def rename(old: str, new: str) -> None:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    await asyncio.to_thread(rename, "posts", "posts_away")
    await asyncio.to_thread(jetstream.publish_posts, second, noise=1)

    async def failed() -> bool:
        errors = await scalar(engine, select(stream_health.c.fetch_errors))
        return bool(errors and errors >= 1)

    await run.until(failed)
    error = await scalar(engine, select(stream_health.c.last_error))
    assert "database error" in error and "posts" in error
    await asyncio.to_thread(rename, "posts_away", "posts")
    await run.until(await stored(20))
    await run.finish()
    got = {r.key for r in await rows(engine, select(posts.c.key))}
    assert got == {stored_key("bluesky", p.uri) for p in world.bluesky_posts()}
