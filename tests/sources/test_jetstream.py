"""The Jetstream consumer against a real websocket server on 127.0.0.1 (tests/fakes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import Config
from monitor.errors import SourceError
from monitor.models import Batch, Cursor
from monitor.sources.jetstream import JetstreamCollector, parse_event
from monitor.sources.jetstream_events import EventFilter
from monitor.sources.ratelimit import HostBudgets
from tests.fakes.data import World, bluesky_record
from tests.fakes.jetstream import (
    JetstreamFake,
    account_event,
    commit_create,
    commit_delete,
    identity_event,
    noise_events,
)

TAGS = ["metoo", "howiwillchange", "notallmen", "ididit"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(*hosts: str, **extra: Any) -> Config:
    source = {"type": "jetstream", "hosts": list(hosts), "batch_interval": "0.05s",
              "rewind": "2s", **extra}
    return Config(sources=[source], http={"backoff_base": "0.05s", "backoff_max": "0.2s"})


def collector(config: Config) -> JetstreamCollector:
    cfg = config.sources[0]
    assert cfg.type == "jetstream"
    return JetstreamCollector(cfg, config, HostBudgets(config.http))


@pytest.fixture
def fake() -> Iterator[JetstreamFake]:
    server = JetstreamFake()
    yield server
    server.stop()


class Running:
    """A collector's run() in a task, with every batch it handed over."""

    def __init__(self, col: JetstreamCollector, cursor: Cursor | None = None,
                 sink: Callable[[Batch], Any] | None = None) -> None:
        self.col = col
        self.batches: list[Batch] = []
        self.task = asyncio.create_task(col.run(cursor, sink or self._sink))

    async def _sink(self, batch: Batch) -> None:
        self.batches.append(batch)

    @property
    def keys(self) -> list[str]:
        return [p.key for b in self.batches for p in b.posts]

    @property
    def deleted(self) -> list[str]:
        return [k for b in self.batches for k in b.deleted]

    @property
    def cursor(self) -> int | None:
        cursors = [int(b.cursor.value) for b in self.batches if b.cursor]
        return cursors[-1] if cursors else None

    async def until(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if self.task.done():
                self.task.result()
                raise AssertionError("collector stopped")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("timed out waiting for the collector")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def running() -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        await run.stop()


async def subscribed(fake: JetstreamFake, count: int = 1) -> None:
    await asyncio.to_thread(fake.wait_for_subscribers, count)


def post_event(did: str, rkey: str, text: str, *, facets: list[str] = (),  # type: ignore[assignment]
               tags: list[str] | None = None, created: str = "2025-11-20T14:03:11.123Z",
               **record_extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": created,
                              **record_extra}
    if facets:
        record["facets"] = []
        for tag in facets:
            word = f"#{tag}".encode()
            start = text.encode().find(word)
            record["facets"].append({
                "$type": "app.bsky.richtext.facet",
                "index": {"byteStart": max(start, 0), "byteEnd": max(start, 0) + len(word)},
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}]})
    if tags is not None:
        record["tags"] = tags
    return commit_create(did, rkey, record)


# ---------------------------------------------------------------------------- filtering


async def test_keeps_followed_posts_by_facet_tags_and_text(fake: JetstreamFake,
                                                           running: list[Running]) -> None:
    run = Running(collector(make_config(fake.url)))
    running.append(run)
    await subscribed(fake)
    fake.publish([
        post_event("did:plc:a", "facet", "Seven years on. #MeToo", facets=["MeToo"]),
        post_event("did:plc:a", "tagsonly", "Listening today.", tags=["NotAllMen"]),
        post_event("did:plc:a", "textonly", "no facets here #HowIWillChange!"),
        post_event("did:plc:a", "upper", "LOUD #METOO", facets=["METOO"]),
        post_event("did:plc:a", "fullwidth", "全角で ＃ＭｅＴｏｏ です"),
        # not ours: other tags, the word without '#', a '#metoo' inside a URL, a like
        post_event("did:plc:b", "other", "Cats! #caturday", facets=["caturday"]),
        post_event("did:plc:b", "bare", "the metoo movement, a history"),
        post_event("did:plc:b", "url", "read https://example.com/x#metoo today"),
        post_event("did:plc:b", "prefix", "#MeTooish is not a followed tag"),
        commit_create("did:plc:b", "like1", {"$type": "app.bsky.feed.like", "text": "#metoo",
                                             "createdAt": "2025-11-20T14:00:00Z"},
                      collection="app.bsky.feed.like"),
        identity_event("did:plc:b", "b.bsky.social"),
        account_event("did:plc:b"),
    ])
    expected = {f"at://did:plc:a/app.bsky.feed.post/{r}"
                for r in ("facet", "tagsonly", "textonly", "upper", "fullwidth")}
    await run.until(lambda: len(run.keys) >= 5 and run.cursor == fake.last_time_us)
    await asyncio.sleep(0.2)  # anything wrongly kept would have arrived by now
    assert sorted(run.keys) == sorted(expected)
    # the fake honoured wantedCollections: the like never reached the consumer
    assert fake.subscriptions[0].collections == ("app.bsky.feed.post",)
    assert run.col.events_seen == 11


async def test_post_fields_follow_the_record(fake: JetstreamFake, running: list[Running]) -> None:
    run = Running(collector(make_config(fake.url)))
    running.append(run)
    await subscribed(fake)
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    fake.publish([
        post_event("did:plc:alice", "3lbxyz", "Still here. #MeToo", facets=["MeToo"],
                   tags=["IDidIt"], langs=["en", "fr"],
                   labels={"$type": "com.atproto.label.defs#selfLabels",
                           "values": [{"val": "graphic-media"}]}),
        post_event("did:plc:bob", "3lfuture", "From the future #metoo", created=future),
    ])
    await run.until(lambda: len(run.keys) == 2)
    first, second = [p for b in run.batches for p in b.posts]
    assert first.platform == "bluesky"
    assert first.key == "at://did:plc:alice/app.bsky.feed.post/3lbxyz"
    assert first.url == "https://bsky.app/profile/did:plc:alice/post/3lbxyz"
    assert first.author == "did:plc:alice"
    assert first.created_at == datetime(2025, 11, 20, 14, 3, 11, 123000, tzinfo=UTC)
    assert first.lang == "en"
    assert first.tags == ("MeToo", "IDidIt")
    assert first.text == "Still here. #MeToo"
    assert first.sensitive is True and first.is_repost is False
    # a createdAt in the future is clamped to when the network saw the post
    assert second.created_at <= datetime.now(UTC)
    assert second.created_at > datetime.now(UTC) - timedelta(minutes=1)


# ---------------------------------------------------------------------------- cursor, replay


async def test_cursor_is_the_last_event_and_a_restart_replays_from_it(
        fake: JetstreamFake, running: list[Running]) -> None:
    world = World(seed=3, mastodon_posts=0, bluesky_posts=30)
    posts = world.bluesky_posts()
    config = make_config(fake.url)
    run = Running(collector(config))
    running.append(run)
    await subscribed(fake)
    fake.publish_posts(posts[:15], noise=2)
    # trailing events that are not ours still move the cursor
    tail = fake.publish([identity_event("did:plc:x", "x.bsky.social")] * 3)
    await run.until(lambda: run.cursor == tail[-1])
    assert len(set(run.keys)) == 15
    await run.stop()
    saved = run.batches[-1].cursor
    assert saved is not None and saved.stream == f"127.0.0.1:{fake.port}#*"

    # while we were away
    fake.publish_posts(posts[15:], noise=2)
    again = Running(collector(config), cursor=saved)
    running.append(again)
    await again.until(lambda: len(set(again.keys)) >= 15)
    sub = fake.subscriptions[-1]
    assert sub.cursor == int(saved.value) - 2_000_000  # rewind: 2s
    assert {p.uri for p in posts[15:]} <= set(again.keys)
    # together: every post, and only the rewind window could repeat
    assert set(run.keys) | set(again.keys) == {p.uri for p in posts}


async def test_reconnects_after_a_drop_without_losing_events(fake: JetstreamFake,
                                                             running: list[Running]) -> None:
    world = World(seed=4, mastodon_posts=0, bluesky_posts=40)
    posts = world.bluesky_posts()
    fake.drop_after(25)  # the first connection is cut without a close frame
    run = Running(collector(make_config(fake.url)))
    running.append(run)
    await subscribed(fake)
    fake.publish_posts(posts, noise=1)
    await run.until(lambda: set(run.keys) == {p.uri for p in posts})
    assert len(fake.subscriptions) == 2
    assert fake.subscriptions[0].cursor is None
    resumed = fake.subscriptions[1].cursor
    assert resumed is not None and resumed < fake.last_time_us


async def test_rotates_to_the_next_host_when_one_is_down(fake: JetstreamFake,
                                                         running: list[Running],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/subscribe"
    run = Running(collector(make_config(dead, fake.url)))
    running.append(run)
    with caplog.at_level(logging.WARNING, logger="monitor.sources.jetstream"):
        await subscribed(fake)
        fake.publish([post_event("did:plc:a", "r1", "hello #metoo")])
        await run.until(lambda: len(run.keys) == 1)
    lines = [r.getMessage() for r in caplog.records]
    assert any("connection refused" in line and f"reconnecting to 127.0.0.1:{fake.port}" in line
               for line in lines), lines


async def test_every_host_down_raises_a_clear_source_error() -> None:
    dead = [f"ws://127.0.0.1:{free_port()}/subscribe" for _ in range(2)]
    col = collector(make_config(*dead))

    async def sink(batch: Batch) -> None:
        raise AssertionError("nothing to store")

    with pytest.raises(SourceError) as info:
        await asyncio.wait_for(col.run(None, sink), 10)
    message = str(info.value)
    assert "connection refused" in message and "all 2 hosts failed" in message
    assert message.startswith("jetstream 127.0.0.1:")


# ---------------------------------------------------------------------------- bad input


async def test_malformed_frames_and_bad_posts_are_counted_and_skipped(
        fake: JetstreamFake, running: list[Running], caplog: pytest.LogCaptureFixture) -> None:
    run = Running(collector(make_config(fake.url)))
    running.append(run)
    await subscribed(fake)
    with caplog.at_level(logging.WARNING, logger="monitor.sources.jetstream"):
        fake.publish_raw([b'{"did":"did:plc:x","time_us":12,"kind":"commit","commit":{"text":"#metoo',
                          b"metoo but not json", b'["#metoo"]'])
        fake.publish([
            post_event("did:plc:a", "nodate", "secret words #metoo", created="yesterday"),
            # followed by its facet, but the text is not a string
            commit_create("did:plc:a", "badtext", {
                "$type": "app.bsky.feed.post", "text": ["#metoo"],
                "createdAt": "2025-11-20T14:00:00Z",
                "facets": [{"index": {"byteStart": 0, "byteEnd": 6},
                            "features": [{"$type": "app.bsky.richtext.facet#tag",
                                          "tag": "metoo"}]}]}),
            post_event("did:plc:a", "good", "fine #metoo"),
        ])
        await run.until(lambda: "at://did:plc:a/app.bsky.feed.post/good" in run.keys)
        await run.until(lambda: sum(b.rejected for b in run.batches) >= 5)
    assert run.keys == ["at://did:plc:a/app.bsky.feed.post/good"]
    assert sum(b.rejected for b in run.batches) == 5
    lines = [r.getMessage() for r in caplog.records]
    assert any("at://did:plc:a/app.bsky.feed.post/nodate skipped: record.createdAt" in line
               for line in lines), lines
    assert any("badtext skipped: record.text" in line for line in lines), lines
    assert sum("malformed event skipped" in line for line in lines) == 3
    assert not any("secret words" in line for line in lines)  # never the post text


async def test_deletes_are_reported_by_key(fake: JetstreamFake, running: list[Running]) -> None:
    run = Running(collector(make_config(fake.url)))
    running.append(run)
    await subscribed(fake)
    fake.publish([post_event("did:plc:a", "r1", "one #metoo"), commit_delete("did:plc:a", "r1"),
                  commit_delete("did:plc:z", "other")])
    await run.until(lambda: len(run.deleted) == 2)
    assert run.deleted == ["at://did:plc:a/app.bsky.feed.post/r1",
                           "at://did:plc:z/app.bsky.feed.post/other"]


async def test_batches_are_cut_by_size_and_the_last_is_flushed_on_cancel(
        fake: JetstreamFake) -> None:
    world = World(seed=5, mastodon_posts=0, bluesky_posts=23)
    col = collector(make_config(fake.url, batch_size=5, batch_interval="30s"))
    run = Running(col)
    await subscribed(fake)
    fake.publish_posts(world.bluesky_posts())
    await run.until(lambda: len(run.keys) == 20)
    # (the first batch only saves the starting position: issue 11)
    assert [len(b.posts) for b in run.batches] == [0, 5, 5, 5, 5]
    await asyncio.sleep(0.1)
    await run.stop()  # the three in hand are handed over before run() ends
    assert len(run.keys) == 23
    assert run.cursor == fake.last_time_us


async def test_a_failing_sink_stops_the_run_with_its_error(fake: JetstreamFake) -> None:
    class StoreDown(Exception):
        pass

    async def sink(batch: Batch) -> None:
        if batch.posts:
            raise StoreDown("database is gone")

    task = asyncio.create_task(collector(make_config(fake.url)).run(None, sink))
    await subscribed(fake)
    fake.publish([post_event("did:plc:a", "r1", "one #metoo")])
    with pytest.raises(StoreDown):
        await asyncio.wait_for(task, 5)


# ---------------------------------------------------------------------------- the pre-filter


_TEXT = st.text(alphabet=st.sampled_from(list("abcMETOmetoINDLhowilcngd #＃_.'\\\"é全角Ｍｅ𝐌\u212a"
                                              "😢/:")), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, facet=st.one_of(st.none(), _TEXT), extra=st.one_of(st.none(), _TEXT),
       ascii_only=st.booleans())
def test_prefilter_never_drops_a_followed_post(text: str, facet: str | None, extra: str | None,
                                               ascii_only: bool) -> None:
    """may_match() is False only for events the full parse would skip."""
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text,
                              "createdAt": "2025-11-20T14:00:00Z"}
    if facet is not None:
        record["facets"] = [{"index": {"byteStart": 0, "byteEnd": 1},
                             "features": [{"$type": "app.bsky.richtext.facet#tag",
                                           "tag": facet}]}]
    if extra is not None:
        record["tags"] = [extra]
    event = commit_create("did:plc:p", "rk", record)
    event["time_us"] = 1_700_000_000_000_000
    raw = json.dumps(event, ensure_ascii=ascii_only, separators=(",", ":")).encode()
    kind, _ = parse_event(raw, TAGS)
    if kind == "post":
        assert EventFilter(TAGS).may_match(raw), raw


def test_prefilter_skips_plain_noise_without_decoding() -> None:
    import random

    flt = EventFilter(TAGS)
    events = [e for e in noise_events(random.Random(1), 400, with_deletes=False)
              if e["kind"] == "commit" and e["commit"]["collection"] == "app.bsky.feed.post"]
    frames = [json.dumps(dict(e, time_us=1), ensure_ascii=False).encode() for e in events]
    passed = sum(flt.may_match(f) for f in frames)
    # the noise mentioning 'metoo' (bare word, inside a URL) must be decoded, the rest need not
    mentions = sum(b"metoo" in f.lower() for f in frames)
    assert passed >= mentions
    assert passed < len(frames) * 0.75


def test_seed_records_match_as_the_world_says() -> None:
    world = World(seed=9, mastodon_posts=0, bluesky_posts=60)
    for post in world.bluesky_posts():
        event = commit_create(post.did, post.rkey, bluesky_record(post))
        event["time_us"] = 1_900_000_000_000_000
        kind, value = parse_event(json.dumps(event, ensure_ascii=False).encode(), TAGS)
        assert kind == "post", post
        assert value is not None and not isinstance(value, str)
        assert value.key == post.uri and value.created_at == post.created_at


async def test_a_bad_or_very_old_saved_cursor(fake: JetstreamFake, running: list[Running],
                                             caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(fake.url)
    stream = f"127.0.0.1:{fake.port}#*"
    with caplog.at_level(logging.WARNING, logger="monitor.sources.jetstream"):
        bad = Running(collector(config), cursor=Cursor("jetstream", stream, "not-a-time"))
        running.append(bad)
        await subscribed(fake)
        assert fake.subscriptions[-1].cursor is None  # the live tail, not the year 1970
        await bad.stop()
        old_us = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1_000_000)
        old = Running(collector(config), cursor=Cursor("jetstream", stream, str(old_us)))
        running.append(old)
        await old.until(lambda: len(fake.subscriptions) == 2)
    assert fake.subscriptions[-1].cursor == old_us - 2_000_000
    lines = [r.getMessage() for r in caplog.records]
    assert any("'not-a-time' is not a time in microseconds" in line for line in lines)
    assert any("keeps only about 36h" in line for line in lines)


async def test_a_quiet_connection_still_reports_that_it_is_alive(
        fake: JetstreamFake, running: list[Running]) -> None:
    col = collector(make_config(fake.url))
    col.heartbeat = 0.2
    run = Running(col)
    running.append(run)
    await subscribed(fake)
    # nothing is published: empty batches still arrive, so health shows a live stream
    await run.until(lambda: len(run.batches) >= 3, timeout=5)
    assert all(not b.posts and not b.deleted for b in run.batches)
