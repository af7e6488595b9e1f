"""The Bluesky search collector against the fake AppView/PDS on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import Config
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.bluesky import BlueskySearchCollector, post_url
from monitor.sources.http import HttpClient
from monitor.sources.settings import BlueskySearchSource
from tests.fakes.bluesky import APP_PASSWORD, IDENTIFIER, BlueskyFake, start_bluesky_fake
from tests.fakes.data import World


def collector(http: HttpClient, fake: BlueskyFake, **options: object) -> BlueskySearchCollector:
    cfg = BlueskySearchSource.model_validate(
        {"type": "bluesky_search", "appview": fake.url, "pds": fake.url, **options})
    return BlueskySearchCollector(cfg, Config(), http)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def stream_of(fake: BlueskyFake, tag: str = "metoo") -> StreamKey:
    return StreamKey("bluesky-search", fake.url.split("://")[1], tag)


def tagged(world: World, tag: str) -> list[str]:
    return [p.uri for p in world.bluesky_posts() if tag in p.tags]


@pytest.fixture
def authed(world: World) -> Iterator[BlueskyFake]:
    fake = start_bluesky_fake(world, require_auth=True)
    yield fake
    fake.stop()


def test_web_url_from_at_uri() -> None:
    assert post_url("at://did:plc:abc/app.bsky.feed.post/3lbx") == \
        "https://bsky.app/profile/did:plc:abc/post/3lbx"
    assert post_url("at://did:plc:abc/app.bsky.feed.like/3lbx") is None


async def test_first_run_backfills_all_pages_oldest_first(
    http: HttpClient, world: World, bsky: BlueskyFake
) -> None:
    source = collector(http, bsky, page_limit=5, backfill_pages=100)
    batches = await collect(source.poll(stream_of(bsky), None))
    keys = [p.key for b in batches for p in b.posts]
    assert sorted(keys) == sorted(tagged(world, "metoo"))
    newest = [json.loads(b.cursor.value)["newest_indexed_at"] for b in batches if b.cursor]
    assert newest == sorted(newest), "pages must be handed over oldest first"
    sent = bsky.api_requests("searchPosts")[0]
    assert sent.param("q") == "#metoo" and sent.param("tag") == "metoo"
    assert sent.param("sort") == "latest" and sent.param("limit") == "5"
    assert [r.param("cursor") for r in bsky.api_requests("searchPosts")][1:3] == ["5", "10"]


async def test_backfill_depth_is_limited(http: HttpClient, world: World,
                                         bsky: BlueskyFake) -> None:
    source = collector(http, bsky, page_limit=3, backfill_pages=2)
    batches = await collect(source.poll(stream_of(bsky), None))
    assert sum(len(b.posts) for b in batches) == 6
    assert len(bsky.api_requests("searchPosts")) == 2


async def test_post_view_fields_become_a_post(http: HttpClient, world: World,
                                              bsky: BlueskyFake) -> None:
    source = collector(http, bsky, page_limit=100)
    posts = {p.key: p for b in await collect(source.poll(stream_of(bsky), None)) for p in b.posts}
    with_extra = [s for s in world.bluesky_posts() if s.extra_tags and "metoo" in s.tags]
    seed = with_extra[0] if with_extra else next(s for s in world.bluesky_posts()
                                                 if "metoo" in s.tags)
    got = posts[seed.uri]
    assert got.platform == "bluesky"
    assert got.url == f"https://bsky.app/profile/{seed.did}/post/{seed.rkey}"
    assert got.text == seed.text and got.html is None
    assert got.author == seed.did
    assert got.lang == seed.lang
    assert {t.lower() for t in got.tags} == set(seed.tags)  # facets + record.tags
    assert got.created_at.tzinfo is not None
    labelled = [s for s in world.bluesky_posts() if s.sensitive and s.uri in posts]
    assert all(posts[s.uri].sensitive for s in labelled)
    assert not any(posts[s.uri].sensitive for s in world.bluesky_posts()
                   if not s.sensitive and s.uri in posts)


async def test_later_poll_stops_at_the_newest_post_already_seen(
    http: HttpClient, world: World, bsky: BlueskyFake
) -> None:
    source = collector(http, bsky, page_limit=5, backfill_pages=100)
    stream = stream_of(bsky)
    first = await collect(source.poll(stream, None))
    cursor = first[-1].cursor
    before = len(bsky.api_requests("searchPosts"))
    nothing = await collect(source.poll(stream, cursor))
    assert nothing == [Batch(stream=stream)]
    assert len(bsky.api_requests("searchPosts")) == before + 1, "read past the seen post"
    added = [world.add_bluesky_post(["metoo", "notallmen"]) for _ in range(12)]
    batches = await collect(source.poll(stream, cursor))
    assert sorted(p.key for b in batches for p in b.posts) == sorted(p.uri for p in added)
    assert [len(b.posts) for b in batches] == [2, 5, 5]  # oldest page first
    assert batches[-1].cursor is not None
    assert json.loads(batches[-1].cursor.value)["newest_uri"] == added[-1].uri


async def test_unreadable_cursor_falls_back_to_backfill(
    http: HttpClient, world: World, bsky: BlueskyFake, caplog: pytest.LogCaptureFixture
) -> None:
    source = collector(http, bsky, page_limit=100)
    bad = Cursor("bluesky-search", stream_of(bsky).name, "not json")
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(bsky), bad))
    assert sum(len(b.posts) for b in batches) == len(tagged(world, "metoo"))
    assert "saved cursor is not readable" in caplog.text


async def test_search_without_login_gives_a_helpful_error(
    http: HttpClient, authed: BlueskyFake, caplog: pytest.LogCaptureFixture
) -> None:
    source = collector(http, authed)
    with caplog.at_level(logging.WARNING, "monitor.sources"), \
            pytest.raises(SourceError) as info:
        await collect(source.poll(stream_of(authed), None))
    assert not info.value.retryable and info.value.status == 403
    line = str(info.value)
    assert line.startswith(f"{authed.url.split('://')[1]} #metoo: Bluesky refuses search without "
                           "a login (HTTP 403 AuthMissing)")
    assert "set identifier and app_password" in line and "jetstream" in line


async def test_login_with_app_password_then_refresh_on_expiry(
    http: HttpClient, world: World, authed: BlueskyFake
) -> None:
    source = collector(http, authed, identifier=IDENTIFIER, app_password=APP_PASSWORD,
                       page_limit=100)
    stream = stream_of(authed)
    first = await collect(source.poll(stream, None))
    assert sum(len(b.posts) for b in first) == len(tagged(world, "metoo"))
    assert authed.sessions_created == 1
    searches = authed.api_requests("searchPosts")
    assert searches[-1].headers["authorization"].startswith("Bearer ")
    authed.expire_tokens()
    added = world.add_bluesky_post(["metoo"])
    again = await collect(source.poll(stream, first[-1].cursor))
    assert [p.key for b in again for p in b.posts] == [added.uri]
    assert authed.sessions_refreshed == 1 and authed.sessions_created == 1
    # the password never travels in a search request
    assert all(APP_PASSWORD not in json.dumps(r.headers) for r in authed.api_requests())


async def test_wrong_app_password_is_a_clear_non_retryable_error(
    http: HttpClient, authed: BlueskyFake, caplog: pytest.LogCaptureFixture
) -> None:
    source = collector(http, authed, identifier=IDENTIFIER, app_password="wrong")
    with caplog.at_level(logging.WARNING, "monitor.sources"), \
            pytest.raises(SourceError) as info:
        await collect(source.poll(stream_of(authed), None))
    assert not info.value.retryable
    assert "check identifier and app_password" in str(info.value)
    assert "wrong" not in caplog.text


async def test_malformed_post_views_are_skipped_and_counted(
    http: HttpClient, world: World, bsky: BlueskyFake, caplog: pytest.LogCaptureFixture
) -> None:
    seeds = [s for s in world.bluesky_posts() if "metoo" in s.tags][:3]
    bsky.corrupt(seeds[0], "indexedAt", 12345)
    bsky.corrupt(seeds[1], "record.text", None)
    bsky.corrupt(seeds[2], "record.createdAt", "soon")
    source = collector(http, bsky, page_limit=100)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(bsky), None))
    assert sum(b.rejected for b in batches) == 3
    got = {p.key for b in batches for p in b.posts}
    assert got == set(tagged(world, "metoo")) - {s.uri for s in seeds}
    fields = sorted(r.getMessage().split(" field ")[1].split()[0] for r in caplog.records)
    assert fields == ["indexedAt", "record.createdAt", "record.text"]
    assert all(r.getMessage().startswith("bluesky: skipped post at://") for r in caplog.records)


async def test_rate_limit_429_waits_retry_after_then_continues(
    http: HttpClient, world: World, bsky: BlueskyFake
) -> None:
    bsky.faults.rate_limit_next(1, seconds=0.4)
    source = collector(http, bsky, page_limit=100)
    started = time.monotonic()
    batches = await collect(source.poll(stream_of(bsky), None))
    assert time.monotonic() - started >= 0.35
    assert sum(len(b.posts) for b in batches) == len(tagged(world, "metoo"))


async def test_wrong_clock_created_at_in_future_uses_index_time(
    http: HttpClient, world: World, bsky: BlueskyFake
) -> None:
    seed = world.add_bluesky_post(["ididit"])
    bsky.corrupt(seed, "record.createdAt", "2099-01-01T00:00:00.000Z")
    source = collector(http, bsky)
    [got] = [p for b in await collect(source.poll(stream_of(bsky, "ididit"), None))
             for p in b.posts if p.key == seed.uri]
    assert got.created_at <= datetime.now(UTC) + timedelta(minutes=1)


async def test_public_search_refusing_deeper_pages_keeps_the_first_page(
    http: HttpClient, world: World, bsky: BlueskyFake, caplog: pytest.LogCaptureFixture
) -> None:
    bsky.refuse_unauthenticated_cursor = True
    source = collector(http, bsky, page_limit=5, backfill_pages=10)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(bsky), None))
        await collect(source.poll(stream_of(bsky), None))
    newest_five = sorted((s for s in world.bluesky_posts() if "metoo" in s.tags),
                         key=lambda s: s.indexed_at)[-5:]
    assert {p.key for b in batches for p in b.posts} == {s.uri for s in newest_five}
    assert batches[-1].cursor is not None
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1, "the notice is logged once per stream, not every tick"
    assert "refuses further pages without a login" in notices[0]
