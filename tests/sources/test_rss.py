"""The RSS/Atom collector against a fake feed server (and the fake Mastodon API)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.errors import SourceError
from monitor.models import Batch, StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.mastodon import MastodonCollector
from monitor.sources.rss import RssCollector, RssSource, mastodon_key
from monitor.sources.settings import MastodonSource
from monitor.store.schema import posts as posts_table
from monitor.store.write import write_batch
from tests.fakes.data import World
from tests.fakes.mastodon import MastodonFake
from tests.fakes.rss import DELETE, FeedWorld, RssFake, start_rss_fake


@pytest.fixture
def feeds() -> FeedWorld:
    return FeedWorld(seed=3, count=20)


@pytest.fixture
def rss(world: World, feeds: FeedWorld) -> Iterator[RssFake]:
    fake = start_rss_fake(world, feeds)
    yield fake
    fake.stop()


def collector(http: HttpClient, *urls: str) -> RssCollector:
    return RssCollector(RssSource.model_validate({"type": "rss", "feeds": list(urls)}),
                        Config(), http)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def test_status_urls_map_to_the_api_uri() -> None:
    assert mastodon_key("https://origin.example/@alice/0001234") == (
        "https://origin.example/users/alice/statuses/0001234", "alice@origin.example", "0001234")
    assert mastodon_key("https://blog.example/posts/3") is None
    assert mastodon_key("https://pleroma.example/notice/AbC") is None


async def test_mastodon_tag_feed_items_are_keyed_like_the_api(
    http: HttpClient, world: World, rss: RssFake
) -> None:
    source = collector(http, f"{rss.url}/tags/metoo.rss")
    [stream] = source.streams()
    assert stream == StreamKey("rss", f"{rss.host}/tags/metoo.rss", "metoo")
    [batch] = await collect(source.poll(stream, None))
    items = rss.tag_items("metoo")
    assert [p.key for p in batch.posts] == [p.uri for p in reversed(items)]  # oldest first
    post, seed = batch.posts[-1], items[0]
    assert post.platform == "mastodon"
    assert post.author == f"{seed.author}@origin.example"  # the API's acct
    assert post.url == f"https://origin.example/@{seed.author}/{seed.n:08d}"
    assert {t.lower() for t in post.tags} == set(seed.tags)
    assert post.created_at == seed.created_at.replace(microsecond=0)


async def test_conditional_get_unchanged_feed_is_a_304_that_yields_nothing(
    http: HttpClient, world: World, rss: RssFake
) -> None:
    source = collector(http, f"{rss.url}/tags/metoo.rss")
    [stream] = source.streams()
    [first] = await collect(source.poll(stream, None))
    assert first.cursor is not None and json.loads(first.cursor.value)["etag"]
    assert await collect(source.poll(stream, first.cursor)) == []
    request = rss.api_requests("/tags/")[-1]
    assert request.headers["if-none-match"] == json.loads(first.cursor.value)["etag"]
    assert "if-modified-since" in request.headers
    new = world.add_mastodon_post(["metoo"], instances=("a",))
    [second] = await collect(source.poll(stream, first.cursor))
    assert [p.key for p in second.posts] == [new.uri]  # only what is new


async def test_a_status_from_the_api_and_from_rss_is_stored_once(
    http: HttpClient, world: World, rss: RssFake, masto_a: MastodonFake, engine: Engine,
    tmp_path: Path,
) -> None:
    enricher = Enricher.from_config(Config(), secret_dir=tmp_path)
    api = MastodonCollector(MastodonSource(type="mastodon", instances=[masto_a.url],
                                           tags=["metoo"], backfill_pages=50), Config(), http)
    feed = collector(http, f"{rss.url}/tags/metoo.rss")
    for source in (feed, api):  # the feed first: the API's copies must be the duplicates
        for stream in source.streams():
            async for batch in source.poll(stream, None):
                write_batch(engine, enricher.enrich_many(batch.posts), cursor=batch.cursor,
                            stream=batch.stream)
    want = {p.uri for p in world.mastodon_posts("a") if "metoo" in p.tags}
    assert {p.uri for p in rss.tag_items("metoo")} <= want
    with engine.connect() as conn:
        keys = list(conn.execute(select(posts_table.c.key)).scalars())
        platforms = set(conn.execute(select(posts_table.c.platform)).scalars())
        total = conn.execute(select(func.count()).select_from(posts_table)).scalar_one()
    assert set(keys) == want and total == len(want) and platforms == {"mastodon"}


async def test_a_generic_atom_feed_keeps_items_with_a_followed_tag(
    http: HttpClient, feeds: FeedWorld, rss: RssFake
) -> None:
    source = collector(http, f"{rss.url}/feeds/blog.atom")
    [stream] = source.streams()
    assert stream.tag == "*"
    [batch] = await collect(source.poll(stream, None))
    assert {(p.platform, p.key) for p in batch.posts} == set(feeds.expected())
    assert any(s.extra["untagged"] for s in feeds.seeds.all())


async def test_malformed_items_are_skipped_with_a_line_naming_id_and_field(
    http: HttpClient, world: World, rss: RssFake, caplog: pytest.LogCaptureFixture
) -> None:
    bad = rss.tag_items("metoo")[2]
    rss.corrupt(bad.uri, "pubDate", DELETE)
    source = collector(http, f"{rss.url}/tags/metoo.rss")
    [stream] = source.streams()
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        [batch] = await collect(source.poll(stream, None))
    assert batch.rejected == 1 and len(batch.posts) == len(rss.tag_items("metoo")) - 1
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (f"rss: skipped item status {bad.n:08d} on {stream.name}: field published "
                    "missing or not a date")
    assert bad.author not in line


async def test_faults_are_retried_and_a_non_feed_is_one_error(
    http: HttpClient, rss: RssFake, caplog: pytest.LogCaptureFixture
) -> None:
    source = collector(http, f"{rss.url}/tags/metoo.rss")
    [stream] = source.streams()
    rss.faults.fail_next(1, status=503)
    rss.faults.wrong_type_next(1)
    rss.faults.rate_limit_next(1, seconds=0.1)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        [batch] = await collect(source.poll(stream, None))
    assert batch.posts
    assert "HTTP 503" in caplog.text and "text/html" in caplog.text and "HTTP 429" in caplog.text
    rss.faults.add("truncate", 4)
    with pytest.raises(SourceError) as info:
        await collect(source.poll(stream, None))
    assert info.value.retryable and "\n" not in str(info.value)
    missing = collector(http, f"{rss.url}/tags/nosuchtagatall.rss")
    with pytest.raises(SourceError) as gone:
        await collect(missing.poll(missing.streams()[0], None))
    assert "HTTP 404" in str(gone.value)
