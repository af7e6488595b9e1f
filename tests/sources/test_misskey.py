"""The Misskey collector against two fake instances on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.errors import RateLimited, SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.misskey import MisskeyCollector, MisskeySource
from monitor.store.schema import post_tags
from monitor.store.schema import posts as posts_table
from monitor.store.write import write_batch
from tests.fakes.misskey import DELETE, MisskeyFake, MisskeyWorld, start_misskey_fake
from tests.sources.conftest import FAST


@pytest.fixture
def mworld() -> MisskeyWorld:
    return MisskeyWorld(seed=5, count=50)


@pytest.fixture
def mk_a(mworld: MisskeyWorld) -> Iterator[MisskeyFake]:
    fake = start_misskey_fake(mworld, "a")
    yield fake
    fake.stop()


@pytest.fixture
def mk_b(mworld: MisskeyWorld, mk_a: MisskeyFake) -> Iterator[MisskeyFake]:
    fake = start_misskey_fake(mworld, "b", base_a=mk_a.url)
    yield fake
    fake.stop()


def collector(http: HttpClient, *fakes: MisskeyFake, **options: object) -> MisskeyCollector:
    cfg = MisskeySource.model_validate(
        {"type": "misskey", "instances": [f.url for f in fakes], **options})
    return MisskeyCollector(cfg, Config(), http)


def stream_of(fake: MisskeyFake, tag: str = "metoo") -> StreamKey:
    return StreamKey("misskey", fake.host, tag)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def keys_on(world: MisskeyWorld, fake: MisskeyFake, tag: str, base_a: str) -> set[str]:
    return {world.key(s, base_a) for s in world.on(fake.instance) if tag in s.tags}


async def test_first_run_backfills_oldest_page_first_with_untilid(
    http: HttpClient, mworld: MisskeyWorld, mk_a: MisskeyFake
) -> None:
    source = collector(http, mk_a, page_limit=5, backfill_pages=100)
    batches = await collect(source.poll(stream_of(mk_a), None))
    keys = [p.key for b in batches for p in b.posts]
    # renotes are unwrapped to the note they renote: every note once per page set
    assert set(keys) == keys_on(mworld, mk_a, "metoo", mk_a.url)
    cursors = [b.cursor.value for b in batches if b.cursor]
    assert cursors == sorted(cursors)
    requests = mk_a.api_requests("search-by-tag")
    assert len(requests) == len(batches) + 1  # the last, empty page ends the walk


async def test_catch_up_uses_sinceid_oldest_first_without_gap(
    http: HttpClient, mworld: MisskeyWorld, mk_a: MisskeyFake
) -> None:
    source = collector(http, mk_a, page_limit=4)
    stream = stream_of(mk_a)
    cursor = (await collect(source.poll(stream, None)))[-1].cursor
    assert cursor is not None
    added = [mworld.add(("metoo",), instances=("a",), renoted=False) for _ in range(11)]
    batches = await collect(source.poll(stream, cursor))
    assert [len(b.posts) for b in batches] == [4, 4, 3]
    assert [p.key for b in batches for p in b.posts] == [mworld.key(s, mk_a.url) for s in added]
    assert batches[-1].cursor is not None
    assert batches[-1].cursor.value == mk_a.note_id(added[-1])
    # nothing new: one empty, successful poll
    again = await collect(source.poll(stream, batches[-1].cursor))
    assert again == [Batch(stream=stream)]


async def test_renotes_and_federated_copies_are_stored_once(
    http: HttpClient, mworld: MisskeyWorld, mk_a: MisskeyFake, mk_b: MisskeyFake,
    engine: Engine, tmp_path: Path,
) -> None:
    seed = mworld.add(("metoo", "ididit"), instances=("a", "b"), renoted=True)
    assert sum(1 for r in mworld.renotes if r[3] is seed) == 2
    source = collector(http, mk_a, mk_b, backfill_pages=50)
    enricher = Enricher.from_config(Config(), secret_dir=tmp_path)
    for stream in source.streams():
        async for batch in source.poll(stream, None):
            write_batch(engine, enricher.enrich_many(batch.posts), cursor=batch.cursor,
                        stream=batch.stream, rejected=batch.rejected)
    expected = mworld.expected(mk_a.url)
    with engine.connect() as conn:
        stored = set(conn.execute(select(posts_table.c.platform, posts_table.c.key)).all())
        per_tag = dict(conn.execute(select(post_tags.c.tag, func.count())
                                    .group_by(post_tags.c.tag)).all())
    assert stored == set(expected)
    want: dict[str, int] = {}
    for _, tags in expected.values():
        for tag in tags:
            want[tag] = want.get(tag, 0) + 1
    assert per_tag == want


async def test_malformed_notes_are_skipped_with_a_line_naming_id_and_field(
    http: HttpClient, mworld: MisskeyWorld, mk_a: MisskeyFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = collector(http, mk_a)
    stream = stream_of(mk_a)
    cursor = (await collect(source.poll(stream, None)))[-1].cursor
    seeds = [mworld.add(("metoo",), instances=("a",), renoted=False) for _ in range(5)]
    mk_a.corrupt(seeds[0], "createdAt", "soon")
    mk_a.corrupt(seeds[1], "user", DELETE)
    mk_a.corrupt(seeds[2], "tags", "metoo")
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream, cursor))
    assert sum(b.rejected for b in batches) == 3
    assert [p.key for b in batches for p in b.posts] == [mworld.key(s, mk_a.url)
                                                          for s in seeds[3:]]
    lines = [r.getMessage() for r in caplog.records]
    for line, seed, field in zip(lines, seeds[:3], ["createdAt", "user", "tags"], strict=True):
        assert line.startswith(f"misskey: skipped note {mk_a.note_id(seed)} on {mk_a.host} "
                               f"#metoo: field {field} ")
        assert seed.sentence not in line and seed.author not in line
    assert batches[-1].cursor is not None
    assert batches[-1].cursor.value == mk_a.note_id(seeds[-1])


async def test_rate_limit_is_waited_out_and_5xx_retried(
    http: HttpClient, mk_a: MisskeyFake, caplog: pytest.LogCaptureFixture
) -> None:
    mk_a.faults.rate_limit_next(1, seconds=0.2)
    mk_a.faults.fail_next(1, status=502)
    mk_a.faults.truncate_next(1)
    source = collector(http, mk_a, backfill_pages=1)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(mk_a), None))
    assert sum(len(b.posts) for b in batches) > 0
    text = caplog.text
    assert "HTTP 429 (rate limited)" in text and "HTTP 502" in text and "truncated" in text


async def test_rate_limit_window_exhausted_skips_the_tick(mk_a: MisskeyFake) -> None:
    settings = FAST.model_copy(update={"max_retries": 0})
    async with HttpClient(settings) as http:
        mk_a.faults.rate_limit_next(1, seconds=30)
        with pytest.raises(RateLimited):
            await collect(collector(http, mk_a).poll(stream_of(mk_a), None))


async def test_wrong_shape_and_login_errors_are_one_line(
    http: HttpClient, mworld: MisskeyWorld, mk_a: MisskeyFake
) -> None:
    mk_a.faults.wrong_shape_next(1)
    with pytest.raises(SourceError) as info:
        await collect(collector(http, mk_a).poll(stream_of(mk_a), None))
    assert str(info.value) == f"{mk_a.host} #metoo: expected a JSON array of notes, got dict"
    locked = start_misskey_fake(mworld, "a", token="tok3n")
    try:
        with pytest.raises(SourceError) as info:
            await collect(collector(http, locked).poll(stream_of(locked), None))
        assert not info.value.retryable
        assert "set access_token on this misskey source" in str(info.value)
        batches = await collect(collector(http, locked, access_token="tok3n")
                                .poll(stream_of(locked), None))
        assert sum(len(b.posts) for b in batches) > 0
        assert b"tok3n" not in repr(batches).encode()
    finally:
        locked.stop()


async def test_restart_from_saved_cursor_fetches_only_new_notes(
    http: HttpClient, mworld: MisskeyWorld, mk_a: MisskeyFake
) -> None:
    stream = stream_of(mk_a)
    saved = (await collect(collector(http, mk_a).poll(stream, None)))[-1].cursor
    new = mworld.add(("metoo",), instances=("a",), renoted=False)
    batches = await collect(collector(http, mk_a).poll(stream, saved))
    assert [p.key for b in batches for p in b.posts] == [mworld.key(new, mk_a.url)]
    assert Cursor("misskey", stream.name, mk_a.note_id(new)) == batches[-1].cursor
