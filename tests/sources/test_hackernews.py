"""The Hacker News (Algolia) collector against a fake search API on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import Config
from monitor.errors import RateLimited, SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.hackernews import HackerNewsCollector, HackerNewsSource
from monitor.sources.http import HttpClient
from tests.fakes.hackernews import DELETE, HackerNewsFake, HackerNewsWorld, start_hackernews_fake
from tests.sources.conftest import FAST


@pytest.fixture
def hworld() -> HackerNewsWorld:
    return HackerNewsWorld(seed=2, count=50)


@pytest.fixture
def hn(hworld: HackerNewsWorld) -> Iterator[HackerNewsFake]:
    fake = start_hackernews_fake(hworld)
    yield fake
    fake.stop()


def collector(http: HttpClient, fake: HackerNewsFake, **options: object) -> HackerNewsCollector:
    cfg = HackerNewsSource.model_validate({"type": "hackernews", "api": fake.api, **options})
    return HackerNewsCollector(cfg, Config(), http)


def stream_of(fake: HackerNewsFake, tag: str = "metoo") -> StreamKey:
    return StreamKey("hackernews", fake.host, tag)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def want(world: HackerNewsWorld, tag: str) -> set[str]:
    return {str(s.n) for s in world.real() if tag in s.tags}


async def test_first_run_takes_the_backfill_window_and_pages(
    http: HttpClient, hworld: HackerNewsWorld, hn: HackerNewsFake
) -> None:
    source = collector(http, hn, hits_per_page=7)
    batches = await collect(source.poll(stream_of(hn), None))
    keys = [p.key for b in batches for p in b.posts]
    assert set(keys) == want(hworld, "metoo") and len(keys) == len(set(keys))
    requests = hn.api_requests("search_by_date")
    assert [r.param("page") for r in requests] == [str(i) for i in range(len(requests))]
    window = requests[0].param("numericFilters") or ""
    assert window.startswith("created_at_i>") and ",created_at_i<=" in window
    newest = max(int(s.created_at.timestamp()) for s in hworld.seeds.all() if "metoo" in s.tags)
    assert batches[-1].cursor == Cursor("hackernews", stream_of(hn).name, str(newest))


async def test_polling_uses_the_cursor_window_and_does_not_repeat_the_overlap(
    http: HttpClient, hworld: HackerNewsWorld, hn: HackerNewsFake
) -> None:
    source = collector(http, hn, overlap="10m")
    stream = stream_of(hn)
    cursor = (await collect(source.poll(stream, None)))[-1].cursor
    assert cursor is not None
    new = [hworld.add(("metoo",)) for _ in range(3)]
    batches = await collect(source.poll(stream, cursor))
    assert [p.key for b in batches for p in b.posts] == [str(s.n) for s in new]
    low = int(cursor.value) - 600
    assert hn.api_requests()[-1].param("numericFilters", ).startswith(  # type: ignore[union-attr]
        f"created_at_i>{low},")
    again = await collect(source.poll(stream, batches[-1].cursor))
    assert again == [Batch(stream=stream, cursor=again[0].cursor)] or again == [Batch(stream)]
    assert not [p for b in again for p in b.posts]


async def test_windows_split_to_get_past_the_1000_hit_cap(http: HttpClient) -> None:
    world = HackerNewsWorld(seed=3, count=0)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    world.bulk(2600, start, seconds=4 * 3600)
    fake = start_hackernews_fake(world)
    try:
        source = collector(http, fake, hits_per_page=1000)
        batches = await collect(source.poll(stream_of(fake), None))
    finally:
        fake.stop()
    keys = [p.key for b in batches for p in b.posts]
    assert len(keys) == len(set(keys)) == 2600
    cursors = [int(b.cursor.value) for b in batches if b.cursor]
    assert cursors == sorted(cursors) and len(batches) >= 3  # oldest window first
    assert all(int(r.param("page") or 0) == 0 for r in fake.api_requests())


async def test_only_whole_tag_words_count_and_every_followed_word_is_a_tag(
    http: HttpClient, hworld: HackerNewsWorld, hn: HackerNewsFake
) -> None:
    source = collector(http, hn)
    cursor = (await collect(source.poll(stream_of(hn), None)))[-1].cursor
    bare = hworld.add(("metoo", "ididit"), kind="story")
    bare.hashed = False
    hworld.add(decoy=True)
    [post] = [p for b in await collect(source.poll(stream_of(hn), cursor)) for p in b.posts]
    assert post.key == str(bare.n) and post.tags == ("metoo", "ididit")
    assert post.url == f"https://news.ycombinator.com/item?id={bare.n}"
    assert post.html is not None and post.html.startswith("<p>Ask HN: thread")


async def test_rate_limit_5xx_and_bad_answers(http: HttpClient, hn: HackerNewsFake,
                                              caplog: pytest.LogCaptureFixture) -> None:
    hn.faults.rate_limit_next(1, seconds=0.1)
    hn.faults.fail_next(1, status=500)
    hn.faults.wrong_type_next(1)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(collector(http, hn).poll(stream_of(hn), None))
    assert sum(len(b.posts) for b in batches) > 0
    assert "HTTP 429" in caplog.text and "HTTP 500" in caplog.text and "text/html" in caplog.text
    hn.faults.wrong_shape_next(1)
    with pytest.raises(SourceError) as info:
        await collect(collector(http, hn).poll(stream_of(hn), None))
    assert str(info.value) == f"{hn.host} #metoo: expected an object with 'hits' and 'nbHits'"
    async with HttpClient(FAST.model_copy(update={"max_retries": 0})) as strict:
        hn.faults.rate_limit_next(1, seconds=60)
        with pytest.raises(RateLimited):
            await collect(collector(strict, hn).poll(stream_of(hn), None))


async def test_malformed_hits_are_skipped_with_a_line_naming_id_and_field(
    http: HttpClient, hworld: HackerNewsWorld, hn: HackerNewsFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = collector(http, hn)
    cursor = (await collect(source.poll(stream_of(hn), None)))[-1].cursor
    seeds = [hworld.add(("metoo",)) for _ in range(4)]
    hn.corrupt(seeds[0], "author", DELETE)
    hn.corrupt(seeds[1], "created_at_i", "yesterday")
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(hn), cursor))
    assert sum(b.rejected for b in batches) == 2
    assert [p.key for b in batches for p in b.posts] == [str(s.n) for s in seeds[2:]]
    lines = sorted(r.getMessage() for r in caplog.records)
    assert lines == sorted([
        f"hackernews: skipped item {seeds[0].n} on {hn.host} #metoo: field author missing or "
        "not a string",
        f"hackernews: skipped item {seeds[1].n} on {hn.host} #metoo: field created_at_i "
        "expected unix seconds, got str"])
