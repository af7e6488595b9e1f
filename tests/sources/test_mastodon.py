"""The Mastodon collector against two fake instances on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.mastodon import MastodonCollector, id_newer, parse_link_header
from monitor.sources.mastodon_live import MastodonLiveCollector
from monitor.sources.settings import MastodonSource
from monitor.store.schema import posts as posts_table
from monitor.store.write import write_batch
from tests.fakes.data import World, snowflake
from tests.fakes.mastodon import DELETE, MastodonFake, start_mastodon_fake
from tests.sources.conftest import FAST


def collector(http: HttpClient, *fakes: MastodonFake, **options: object) -> MastodonCollector:
    cfg = MastodonSource.model_validate(
        {"type": "mastodon", "instances": [f.url for f in fakes], **options})
    return MastodonCollector(cfg, Config(), http)


def stream_of(fake: MastodonFake, tag: str = "metoo") -> StreamKey:
    return StreamKey("mastodon", fake.host, tag)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def expected_ids(world: World, fake: MastodonFake, tag: str) -> list[str]:
    """Instance-local ids of the tag's statuses, oldest first."""
    ids = [p.ids[fake.instance] for p in world.mastodon_posts(fake.instance) if tag in p.tags]
    return sorted(ids, key=lambda i: (len(i), i))


def test_ids_compare_as_snowflakes_without_int() -> None:
    assert id_newer("10", "9")
    assert id_newer("113512345678901235", "113512345678901234")
    assert not id_newer("113512345678901234", "113512345678901234")


def test_link_header_parses_next_and_prev() -> None:
    links = parse_link_header('<https://h/api/v1/timelines/tag/metoo?max_id=5>; rel="next", '
                              '<https://h/api/v1/timelines/tag/metoo?min_id=9>; rel="prev"')
    assert links == {"next": "https://h/api/v1/timelines/tag/metoo?max_id=5",
                     "prev": "https://h/api/v1/timelines/tag/metoo?min_id=9"}


def test_streams_are_instances_times_tags(http: HttpClient, masto_a: MastodonFake,
                                          masto_b: MastodonFake) -> None:
    source = collector(http, masto_a, masto_b, tags=["MeToo", "#IDidIt"])
    assert source.streams() == [
        StreamKey("mastodon", masto_a.host, "metoo"), StreamKey("mastodon", masto_a.host, "ididit"),
        StreamKey("mastodon", masto_b.host, "metoo"), StreamKey("mastodon", masto_b.host, "ididit"),
    ]
    assert source.interval() == timedelta(minutes=2)


async def test_first_run_backfills_everything_oldest_page_first(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = collector(http, masto_a, page_limit=5, backfill_pages=100)
    batches = await collect(source.poll(stream_of(masto_a), None))
    want = expected_ids(world, masto_a, "metoo")
    got_keys = [p.key for b in batches for p in b.posts]
    assert len(got_keys) == len(want) == len(set(got_keys))
    cursors = [b.cursor.value for b in batches if b.cursor]
    assert cursors == sorted(cursors, key=lambda i: (len(i), i)), "pages not oldest first"
    assert cursors[-1] == want[-1]
    # it walked back with the Link header's max_id, never with since_id
    pages = masto_a.api_requests("/timelines/tag/metoo")
    assert all(r.param("since_id") is None for r in pages)
    assert [r.param("max_id") is not None for r in pages][1:] == [True] * (len(pages) - 1)


async def test_backfill_depth_is_limited_by_backfill_pages(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = collector(http, masto_a, page_limit=4, backfill_pages=2)
    batches = await collect(source.poll(stream_of(masto_a), None))
    got = {p.key for b in batches for p in b.posts}
    newest_eight = [p for p in world.mastodon_posts("a") if "metoo" in p.tags]
    newest_eight.sort(key=lambda p: (len(p.ids["a"]), p.ids["a"]))
    assert got == {p.uri for p in newest_eight[-8:]}
    assert len(masto_a.api_requests()) == 2


async def test_backfill_pages_zero_only_remembers_where_now_is(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = collector(http, masto_a, backfill_pages=0)
    batches = await collect(source.poll(stream_of(masto_a), None))
    assert [len(b.posts) for b in batches] == [0]
    assert batches[0].cursor is not None
    assert batches[0].cursor.value == expected_ids(world, masto_a, "metoo")[-1]


async def test_poll_with_cursor_and_nothing_new_is_one_empty_success(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = collector(http, masto_a)
    newest = expected_ids(world, masto_a, "metoo")[-1]
    cursor = Cursor("mastodon", stream_of(masto_a).name, newest)
    batches = await collect(source.poll(stream_of(masto_a), cursor))
    assert batches == [Batch(stream=stream_of(masto_a))]
    assert masto_a.api_requests()[0].param("min_id") == newest


async def test_catch_up_after_downtime_has_no_gap(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = collector(http, masto_a, page_limit=5)
    stream = stream_of(masto_a)
    first = await collect(source.poll(stream, None))
    cursor = first[-1].cursor
    assert cursor is not None
    # 23 posts arrive while the service is down: more than four pages of five
    added = [world.add_mastodon_post(["metoo", "ididit"], instances=("a", "b"))
             for _ in range(23)]
    requests_before = len(masto_a.api_requests())
    batches = await collect(source.poll(stream, cursor))
    got = [p.key for b in batches for p in b.posts]
    assert sorted(got) == sorted(p.uri for p in added)
    assert [len(b.posts) for b in batches] == [5, 5, 5, 5, 3]
    # each page asked for what is immediately newer than the previous page's newest id
    min_ids = [r.param("min_id") for r in masto_a.api_requests()[requests_before:]]
    assert min_ids == [cursor.value] + [b.cursor.value for b in batches if b.cursor]
    assert batches[-1].cursor is not None
    assert batches[-1].cursor.value == added[-1].ids["a"]


async def test_status_fields_become_a_post(http: HttpClient, world: World,
                                           masto_a: MastodonFake) -> None:
    post = world.add_mastodon_post(["metoo", "notallmen"], instances=("a",))
    source = collector(http, masto_a)
    cursor = Cursor("mastodon", "x", snowflake(post.created_at - timedelta(seconds=1), 0))
    batches = await collect(source.poll(stream_of(masto_a), cursor))
    [got] = [p for b in batches for p in b.posts]
    assert got.platform == "mastodon"
    assert got.key == post.uri
    assert got.url == f"https://origin.example/@{post.author}/{post.n:08d}"
    assert got.author == f"{post.author}@origin.example"
    assert got.created_at == post.created_at.replace(microsecond=post.created_at.microsecond
                                                     // 1000 * 1000)
    assert got.html is not None and 'class="mention hashtag"' in got.html and got.text is None
    assert {t.lower() for t in got.tags} == {"metoo", "notallmen"}
    assert got.lang == post.lang
    assert got.sensitive == bool(post.spoiler_text)
    assert not got.is_repost
    assert got.raw_size > 200


async def test_spoiler_text_marks_the_post_sensitive(http: HttpClient, world: World,
                                                     masto_a: MastodonFake) -> None:
    post = world.add_mastodon_post(["metoo"], instances=("a",))
    masto_a.corrupt(post, "spoiler_text", "cw: assault")
    source = collector(http, masto_a)
    cursor = Cursor("mastodon", "x", snowflake(post.created_at - timedelta(seconds=1), 0))
    [got] = [p for b in await collect(source.poll(stream_of(masto_a), cursor)) for p in b.posts]
    assert got.sensitive


async def test_malformed_statuses_are_skipped_counted_and_logged_without_text(
    http: HttpClient, world: World, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    posts = [world.add_mastodon_post(["metoo"], instances=("a",)) for _ in range(6)]
    masto_a.corrupt(posts[0], "created_at", "yesterday-ish")
    masto_a.corrupt(posts[1], "tags", "metoo")
    masto_a.corrupt(posts[2], "uri", DELETE)
    masto_a.corrupt(posts[3], "account", None)
    source = collector(http, masto_a)
    cursor = Cursor("mastodon", "x", snowflake(posts[0].created_at - timedelta(seconds=1), 0))
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(masto_a), cursor))
    assert sum(b.rejected for b in batches) == 4
    assert {p.key for b in batches for p in b.posts} == {posts[4].uri, posts[5].uri}
    # the cursor still moves past the skipped statuses, so they are not fetched forever
    assert batches[-1].cursor is not None and batches[-1].cursor.value == posts[5].ids["a"]
    lines = [r.getMessage() for r in reversed(caplog.records)]  # pages are newest first
    assert len(lines) == 4
    for line, post, field in zip(lines, posts[:4], ["created_at", "tags", "uri", "account.acct"],
                                 strict=True):
        assert line.startswith(f"mastodon: skipped status {post.ids['a']} on ")
        assert f"field {field} " in line
        assert post.text.split()[0] not in line and post.author not in line


async def test_wrong_shaped_answer_is_a_retryable_error(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    masto_a.faults.wrong_shape_next(1)
    source = collector(http, masto_a)
    with caplog.at_level(logging.WARNING, "monitor.sources"), \
            pytest.raises(SourceError) as info:
        await collect(source.poll(stream_of(masto_a), None))
    assert info.value.retryable
    assert str(info.value) == f"{masto_a.host} #metoo: expected a JSON array of statuses, got dict"
    # the next tick works again
    assert sum(len(b.posts) for b in await collect(source.poll(stream_of(masto_a), None))) > 0


async def test_token_required_without_token_says_what_to_set(
    http: HttpClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = start_mastodon_fake(world, "a", token="s3cret")
    try:
        source = collector(http, fake)
        with caplog.at_level(logging.WARNING, "monitor.sources"), \
                pytest.raises(SourceError) as info:
            await collect(source.poll(stream_of(fake), None))
        assert info.value.status == 401 and not info.value.retryable
        assert str(info.value) == (
            f"{fake.host} #metoo: HTTP 401 (The access token is invalid): this instance requires "
            "a login for hashtag timelines; set access_token on this mastodon source")
        with_token = collector(http, fake, access_token="s3cret")
        with caplog.at_level(logging.DEBUG, "monitor.sources"):
            batches = await collect(with_token.poll(stream_of(fake), None))
        assert "s3cret" not in caplog.text
        assert sum(len(b.posts) for b in batches) == len(expected_ids(world, fake, "metoo"))
        assert fake.api_requests()[-1].headers["authorization"] == "Bearer s3cret"
    finally:
        fake.stop()


async def test_unknown_tag_is_an_empty_poll_logged_once(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    source = collector(http, masto_a, tags=["neverusedtag"])
    stream = source.streams()[0]
    with caplog.at_level(logging.INFO, "monitor.sources"):
        first = await collect(source.poll(stream, None))
        second = await collect(source.poll(stream, None))
    assert first == second == [Batch(stream=stream)]
    assert sum("HTTP 404" in r.getMessage() for r in caplog.records) == 1


async def test_same_status_on_two_instances_is_stored_once(
    http: HttpClient, world: World, masto_a: MastodonFake, masto_b: MastodonFake,
    engine: Engine, tmp_path: Path,
) -> None:
    source = collector(http, masto_a, masto_b, backfill_pages=50)
    enricher = Enricher.from_config(Config(), secret_dir=tmp_path)
    for stream in source.streams():
        async for batch in source.poll(stream, None):
            write_batch(engine, enricher.enrich_many(batch.posts), cursor=batch.cursor,
                        stream=batch.stream, rejected=batch.rejected)
    federated = [p for p in world.mastodon_posts() if len(p.instances) == 2]
    assert federated, "the seeded world must federate some posts to both instances"
    with engine.connect() as conn:
        stored = set(conn.execute(select(posts_table.c.key)).scalars())
        total = conn.execute(select(func.count()).select_from(posts_table)).scalar_one()
    assert stored == {key for _, key in world.expected_keys(["mastodon"])}
    assert total == len(world.posts("mastodon"))


async def test_restart_from_saved_cursor_fetches_only_new_posts(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = collector(http, masto_a, page_limit=10)
    stream = stream_of(masto_a)
    first = await collect(source.poll(stream, None))
    saved = first[-1].cursor
    fresh = collector(http, masto_a, page_limit=10)  # as after a process restart
    new = world.add_mastodon_post(["metoo"], instances=("a",))
    batches = await collect(fresh.poll(stream, saved))
    assert [p.key for b in batches for p in b.posts] == [new.uri]


async def test_5xx_during_catch_up_keeps_what_was_stored(
    world: World, masto_a: MastodonFake
) -> None:
    settings = FAST.model_copy(update={"max_retries": 0})
    async with HttpClient(settings) as http:
        source = collector(http, masto_a, page_limit=5)
        stream = stream_of(masto_a)
        cursor = (await collect(source.poll(stream, None)))[-1].cursor
        added = [world.add_mastodon_post(["metoo"], instances=("a",)) for _ in range(12)]
        got: list[Batch] = []
        gen = source.poll(stream, cursor)
        got.append(await anext(gen))
        masto_a.faults.fail_next(1, status=500)
        with pytest.raises(SourceError):
            async for batch in gen:
                got.append(batch)
        # next tick resumes from the cursor of the last batch that was handed over
        resumed = await collect(source.poll(stream, got[-1].cursor))
    keys = [p.key for b in got + resumed for p in b.posts]
    assert sorted(keys) == sorted(p.uri for p in added)


# ---------------------------------------------------------------------------- live mode


async def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def live(http: HttpClient, fake: MastodonFake, **options: object) -> MastodonLiveCollector:
    cfg = MastodonSource.model_validate({"type": "mastodon", "instances": [fake.url],
                                         "tags": ["metoo"], "streaming": True, **options})
    return MastodonLiveCollector(cfg, Config(), http)


async def test_live_stream_delivers_new_posts_and_deletions(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = live(http, masto_a)
    got: list[Batch] = []

    async def sink(batch: Batch) -> None:
        got.append(batch)

    task = asyncio.create_task(source.run(None, sink))
    try:
        await _wait_for(lambda: bool(source.connected))
        post = world.add_mastodon_post(["metoo"], instances=("a",))
        world.add_mastodon_post(["ididit"], instances=("a",))  # another tag: not on this stream
        await _wait_for(lambda: any(b.posts for b in got))
        masto_a.delete(post)
        await _wait_for(lambda: any(b.deleted for b in got))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [p.key for b in got for p in b.posts] == [post.uri]
    assert [k for b in got for k in b.deleted] == [post.uri]
    assert all(b.cursor is None for b in got), "polling owns the cursor"
    request = masto_a.api_requests("/streaming/hashtag")[0]
    assert request.param("tag") == "metoo"


async def test_live_stream_reconnects_after_a_drop(
    http: HttpClient, world: World, masto_a: MastodonFake
) -> None:
    source = live(http, masto_a)
    got: list[Batch] = []

    async def sink(batch: Batch) -> None:
        got.append(batch)

    task = asyncio.create_task(source.run(None, sink))
    try:
        await _wait_for(lambda: bool(source.connected))
        masto_a.drop_streams()
        await _wait_for(lambda: len(masto_a.api_requests("/streaming/hashtag")) >= 2)
        await _wait_for(lambda: bool(source.connected))
        await asyncio.sleep(0.1)
        post = world.add_mastodon_post(["metoo"], instances=("a",))
        await _wait_for(lambda: any(b.posts for b in got))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [p.key for b in got for p in b.posts] == [post.uri]


async def test_refused_live_stream_falls_back_to_polling_with_one_line(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    masto_a.streaming = "token"
    source = live(http, masto_a)

    async def sink(batch: Batch) -> None:
        raise AssertionError("nothing should arrive")

    with caplog.at_level(logging.WARNING, "monitor.sources"):
        task = asyncio.create_task(source.run(None, sink))
        await _wait_for(lambda: "live stream refused" in caplog.text)
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "HTTP 401" in lines[0] and "polling every 2m instead" in lines[0]
    assert "need a user access_token" in lines[0]
    assert len(masto_a.api_requests("/streaming/hashtag")) == 1


async def test_a_boost_is_marked_as_repost(http: HttpClient, world: World,
                                           masto_a: MastodonFake) -> None:
    post = world.add_mastodon_post(["metoo"], instances=("a",))
    masto_a.corrupt(post, "reblog", {"id": "1", "uri": "https://elsewhere.example/s/1"})
    source = collector(http, masto_a)
    cursor = Cursor("mastodon", "x", snowflake(post.created_at - timedelta(seconds=1), 0))
    [got] = [p for b in await collect(source.poll(stream_of(masto_a), cursor)) for p in b.posts]
    assert got.is_repost
