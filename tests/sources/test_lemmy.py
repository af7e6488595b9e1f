"""The Lemmy collector against two fake 0.19 instances on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.errors import RateLimited
from monitor.models import Batch, StreamKey
from monitor.sources.errors import HttpStatusError
from monitor.sources.http import HttpClient
from monitor.sources.lemmy import LemmyCollector, LemmySource, is_rate_limited
from monitor.store.schema import posts as posts_table
from monitor.store.write import write_batch
from tests.fakes.lemmy import DELETE, LemmyFake, LemmyWorld, start_lemmy_fake
from tests.sources.conftest import FAST


@pytest.fixture
def lworld() -> LemmyWorld:
    return LemmyWorld(seed=4, count=40)


@pytest.fixture
def lm_a(lworld: LemmyWorld) -> Iterator[LemmyFake]:
    fake = start_lemmy_fake(lworld, "a")
    yield fake
    fake.stop()


@pytest.fixture
def lm_b(lworld: LemmyWorld) -> Iterator[LemmyFake]:
    fake = start_lemmy_fake(lworld, "b")
    yield fake
    fake.stop()


def collector(http: HttpClient, *fakes: LemmyFake, **options: object) -> LemmyCollector:
    cfg = LemmySource.model_validate(
        {"type": "lemmy", "instances": [f.url for f in fakes], **options})
    return LemmyCollector(cfg, Config(), http)


def stream_of(fake: LemmyFake, tag: str = "metoo") -> StreamKey:
    return StreamKey("lemmy", fake.host, tag)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def want(world: LemmyWorld, instance: str, tag: str) -> list[str]:
    seeds = [s for s in world.real() if instance in s.extra["instances"]  # type: ignore[operator]
             and tag in s.tags]
    return [world.key(s) for s in sorted(seeds, key=lambda s: (s.created_at, s.n))]


async def test_first_run_pages_back_and_hands_over_oldest_first(
    http: HttpClient, lworld: LemmyWorld, lm_a: LemmyFake
) -> None:
    source = collector(http, lm_a, page_limit=5, backfill_pages=100)
    batches = await collect(source.poll(stream_of(lm_a), None))
    keys = [p.key for b in batches for p in b.posts]
    assert keys == want(lworld, "a", "metoo")
    # the decoy ("metoolkit", a substring only) was fetched but not kept
    assert any(s.extra["decoy"] for s in lworld.seeds.all())
    pages = [r.param("page") for r in lm_a.api_requests("/api/v3/search")]
    assert pages == [str(i) for i in range(1, len(pages) + 1)]


async def test_backfill_pages_bounds_the_first_run(
    http: HttpClient, lworld: LemmyWorld, lm_a: LemmyFake
) -> None:
    source = collector(http, lm_a, page_limit=3, backfill_pages=2)
    await collect(source.poll(stream_of(lm_a), None))
    assert len(lm_a.api_requests("/api/v3/search")) == 2


async def test_catch_up_stops_at_the_cursor_without_gap_or_repeat(
    http: HttpClient, lworld: LemmyWorld, lm_a: LemmyFake
) -> None:
    source = collector(http, lm_a, page_limit=4, backfill_pages=100)
    stream = stream_of(lm_a)
    cursor = (await collect(source.poll(stream, None)))[-1].cursor
    added = [lworld.add(("metoo",), instances=("a",)) for _ in range(9)]
    before = len(lm_a.api_requests())
    batches = await collect(source.poll(stream, cursor))
    assert [p.key for b in batches for p in b.posts] == [lworld.key(s) for s in added]
    assert len(lm_a.api_requests()) - before == 3  # 4 + 4 + (1 new, then a known one)
    again = await collect(source.poll(stream, batches[-1].cursor))
    assert again == [Batch(stream=stream)]


async def test_tag_words_are_matched_in_title_and_body_with_or_without_hash(
    http: HttpClient, lworld: LemmyWorld, lm_a: LemmyFake
) -> None:
    source = collector(http, lm_a)
    cursor = (await collect(source.poll(stream_of(lm_a), None)))[-1].cursor
    bare = lworld.add(("metoo", "notallmen"), instances=("a",))
    bare.hashed = False
    batches = await collect(source.poll(stream_of(lm_a), cursor))
    [post] = [p for b in batches for p in b.posts]
    assert post.tags == ("metoo", "notallmen")
    assert post.url == post.key == lworld.key(bare)


async def test_same_ap_id_on_two_instances_is_stored_once(
    http: HttpClient, lworld: LemmyWorld, lm_a: LemmyFake, lm_b: LemmyFake,
    engine: Engine, tmp_path: Path,
) -> None:
    source = collector(http, lm_a, lm_b, backfill_pages=100)
    enricher = Enricher.from_config(Config(), secret_dir=tmp_path)
    for stream in source.streams():
        async for batch in source.poll(stream, None):
            write_batch(engine, enricher.enrich_many(batch.posts), cursor=batch.cursor,
                        stream=batch.stream, rejected=batch.rejected)
    with engine.connect() as conn:
        stored = set(conn.execute(select(posts_table.c.platform, posts_table.c.key)).all())
    assert stored == set(lworld.expected())


async def test_lemmy_019_rate_limit_400_is_a_rate_limit(
    http: HttpClient, lm_a: LemmyFake, caplog: pytest.LogCaptureFixture
) -> None:
    lm_a.faults.rate_limit_next(2)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(collector(http, lm_a).poll(stream_of(lm_a), None))
    assert sum(len(b.posts) for b in batches) > 0
    assert caplog.text.count("HTTP 400 (rate limited); retrying") == 2


async def test_rate_limit_hook_is_per_request(lm_a: LemmyFake) -> None:
    """The transport's classifier: only the request that asks treats a 400 as a limit."""
    settings = FAST.model_copy(update={"max_retries": 1})
    async with HttpClient(settings) as http:
        url = f"{lm_a.url}/api/v3/search"
        lm_a.faults.rate_limit_next(1)
        with pytest.raises(HttpStatusError) as plain:
            await http.request_json("GET", url, params={"q": "metoo"})
        assert plain.value.status == 400 and plain.value.error == "rate_limit_error"
        lm_a.faults.rate_limit_next(2)
        with pytest.raises(RateLimited) as limited:
            await http.request_json("GET", url, params={"q": "metoo"},
                                    rate_limited=is_rate_limited)
        assert "HTTP 400 (rate limited)" in str(limited.value)
    other = httpx.Response(400, json={"error": "couldnt_find_post"})
    assert not is_rate_limited(other)
    assert is_rate_limited(httpx.Response(400, json={"error": "rate_limit_error"}))


async def test_5xx_and_truncated_answers_are_retried(
    http: HttpClient, lm_a: LemmyFake
) -> None:
    lm_a.faults.fail_next(1, status=503)
    lm_a.faults.truncate_next(1)
    batches = await collect(collector(http, lm_a).poll(stream_of(lm_a), None))
    assert sum(len(b.posts) for b in batches) > 0


async def test_malformed_posts_are_skipped_with_a_line_naming_id_and_field(
    http: HttpClient, lworld: LemmyWorld, lm_a: LemmyFake, caplog: pytest.LogCaptureFixture
) -> None:
    source = collector(http, lm_a)
    cursor = (await collect(source.poll(stream_of(lm_a), None)))[-1].cursor
    seeds = [lworld.add(("metoo",), instances=("a",)) for _ in range(4)]
    lm_a.corrupt(seeds[0], "creator", DELETE)
    lm_a.corrupt(seeds[1], "post.nsfw", "maybe")
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(lm_a), cursor))
    assert sum(b.rejected for b in batches) == 2
    assert [p.key for b in batches for p in b.posts] == [lworld.key(s) for s in seeds[2:]]
    lines = sorted(r.getMessage() for r in caplog.records)
    ids = {s.extra["ids"]["a"]: s for s in seeds[:2]}  # type: ignore[index]
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("lemmy: skipped post ") and f" on {lm_a.host} #metoo: " in line
        pid = int(line.split()[3])
        field = {seeds[0].n: "creator", seeds[1].n: "post.nsfw"}[ids[pid].n]
        assert f"field {field} " in line and ids[pid].sentence not in line
