"""The X recent-search collector against the fake X API on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from monitor.config import Config
from monitor.errors import ConfigError, RateLimited, SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.files import PRESETS, Rejected, Row, read_posts
from monitor.sources.http import HttpClient
from monitor.sources.ratelimit import X
from monitor.sources.x import XCollector, XSource
from tests.fakes.x import BEARER, XFake, start_x_fake, tweet_snowflake
from tests.sources.conftest import FAST


@pytest.fixture
def xfake() -> Iterator[XFake]:
    fake = start_x_fake(tweets=80)
    yield fake
    fake.stop()


def collector(http: HttpClient, fake: XFake, **options: object) -> XCollector:
    cfg = XSource.model_validate({"type": "x", "api_url": fake.url, "bearer_token": BEARER,
                                  "tags": ["metoo"], **options})
    return XCollector(cfg, Config(), http)


def stream_of(fake: XFake, tag: str = "metoo") -> StreamKey:
    return StreamKey("x", fake.host, tag)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def want_ids(fake: XFake, tag: str = "metoo") -> set[str]:
    return {t.id for t in fake.kept() if tag in t.tags}


def test_missing_token_is_one_config_line_saying_where_to_get_it(tmp_path: Path) -> None:
    from monitor.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text("sources:\n  - type: x\n    bearer_token: ${X_BEARER_TOKEN:-}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3: sources[0].bearer_token: expected the bearer token")
    assert "https://developer.x.com" in message


async def test_first_run_backfills_oldest_page_first_with_cursors(
    http: HttpClient, xfake: XFake
) -> None:
    source = collector(http, xfake, max_results=10, backfill_pages=100)
    batches = await collect(source.poll(stream_of(xfake), None))
    keys = [p.key for b in batches for p in b.posts]
    assert len(keys) == len(set(keys))
    assert set(keys) == want_ids(xfake)
    assert all(p.platform == "twitter" for b in batches for p in b.posts)
    cursors = [b.cursor.value for b in batches if b.cursor]
    assert cursors == sorted(cursors, key=lambda i: (len(i), i))
    assert cursors[-1] == max(want_ids(xfake), key=lambda i: (len(i), i))
    searches = xfake.api_requests("/2/tweets/search/recent")
    assert searches[0].param("query") == "#metoo -is:retweet"
    assert searches[0].param("expansions") == "author_id"
    assert [r.param("next_token") is None for r in searches] == \
        [True] + [False] * (len(searches) - 1)
    assert all(r.headers["authorization"] == f"Bearer {BEARER}" for r in searches)


async def test_poll_uses_since_id_and_pages_with_next_token(
    http: HttpClient, xfake: XFake
) -> None:
    source = collector(http, xfake, max_results=10)
    stream = stream_of(xfake)
    first = await collect(source.poll(stream, None))  # backfill_pages=1
    cursor = first[-1].cursor
    assert cursor is not None
    added = [xfake.add_tweet(("metoo", "ididit")) for _ in range(25)]
    before = len(xfake.api_requests())
    batches = await collect(source.poll(stream, cursor))
    assert sorted(p.key for b in batches for p in b.posts) == sorted(t.id for t in added)
    assert [len(b.posts) for b in batches] == [5, 10, 10]  # oldest page first
    requests = xfake.api_requests()[before:]
    assert all(r.param("since_id") == cursor.value for r in requests)
    assert [r.param("next_token") is not None for r in requests] == [False, True, True]
    assert batches[-1].cursor is not None and batches[-1].cursor.value == added[-1].id
    # nothing new: one request, one empty successful batch
    again = await collect(source.poll(stream, batches[-1].cursor))
    assert again == [Batch(stream=stream)]


async def test_tweet_fields_become_a_post(http: HttpClient, xfake: XFake) -> None:
    tweet = xfake.add_tweet(("metoo", "notallmen"))
    source = collector(http, xfake)
    cursor = Cursor("x", "s", tweet_snowflake(tweet.created_at - timedelta(seconds=1), 0))
    [got] = [p for b in await collect(source.poll(stream_of(xfake), cursor)) for p in b.posts]
    assert got.key == tweet.id and got.platform == "twitter"
    assert got.text == tweet.text and got.html is None
    assert {t.lower() for t in got.tags} == {"metoo", "notallmen"}
    assert got.author == f"user{tweet.author_id}"  # the username, from the expansion
    assert got.url == f"https://x.com/user{tweet.author_id}/status/{tweet.id}"
    assert got.lang == tweet.lang
    # the API writes milliseconds
    assert got.created_at == tweet.created_at.replace(
        microsecond=tweet.created_at.microsecond // 1000 * 1000)
    assert not got.is_repost


async def test_malformed_tweets_are_skipped_with_one_line_each(
    http: HttpClient, xfake: XFake, caplog: pytest.LogCaptureFixture
) -> None:
    tweets = [xfake.add_tweet() for _ in range(5)]
    xfake.corrupt(tweets[0], "created_at", "last tuesday")
    xfake.corrupt(tweets[1], "entities", {"hashtags": "metoo"})
    xfake.corrupt(tweets[2], "text", None)
    source = collector(http, xfake)
    cursor = Cursor("x", "s", tweet_snowflake(tweets[0].created_at - timedelta(seconds=1), 0))
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(xfake), cursor))
    assert sum(b.rejected for b in batches) == 3
    assert {p.key for b in batches for p in b.posts} == {tweets[3].id, tweets[4].id}
    assert batches[-1].cursor is not None and batches[-1].cursor.value == tweets[4].id
    lines = sorted(r.getMessage() for r in caplog.records)
    assert lines == sorted([
        f"x: skipped tweet {tweets[0].id} on {xfake.host} #metoo: field created_at "
        "expected an ISO-8601 time",
        f"x: skipped tweet {tweets[1].id} on {xfake.host} #metoo: field entities.hashtags "
        "expected a list, got str",
        f"x: skipped tweet {tweets[2].id} on {xfake.host} #metoo: field text "
        "missing or not a string",
    ])


async def test_rate_limit_headers_are_read_as_epoch_and_429_waits(
    http: HttpClient, xfake: XFake
) -> None:
    source = collector(http, xfake)
    assert http.budgets.of(xfake.host).scheme is X
    xfake.faults.rate_limit_next(1, seconds=2.0)
    started = time.monotonic()
    batches = await collect(source.poll(stream_of(xfake), None))
    assert time.monotonic() - started >= 0.9  # waited for the epoch reset, then retried
    assert sum(len(b.posts) for b in batches) > 0
    # the last request of a window blocks the host until its reset: the tick is skipped
    xfake.set_rate_limit(2, 60.0)
    await collect(source.poll(stream_of(xfake), None))
    await collect(source.poll(stream_of(xfake), None))
    with pytest.raises(RateLimited) as info:
        await collect(source.poll(stream_of(xfake), None))
    assert 50 < info.value.retry_after <= 62
    assert len(xfake.api_requests()) == 4  # the third poll never reached the server


async def test_5xx_and_malformed_answers_are_retried(http: HttpClient, xfake: XFake) -> None:
    xfake.faults.fail_next(1, status=503)
    xfake.faults.truncate_next(1)
    xfake.faults.wrong_type_next(1)
    batches = await collect(collector(http, xfake).poll(stream_of(xfake), None))
    assert sum(len(b.posts) for b in batches) > 0
    xfake.faults.wrong_shape_next(1)
    with pytest.raises(SourceError) as info:
        await collect(collector(http, xfake).poll(stream_of(xfake), None))
    assert info.value.retryable and "expected an object with data and meta" in str(info.value)


async def test_bad_token_is_a_one_line_non_retryable_error(xfake: XFake) -> None:
    async with HttpClient(FAST) as http:
        cfg = XSource.model_validate({"type": "x", "api_url": xfake.url,
                                      "bearer_token": "wrong", "tags": ["metoo"]})
        source = XCollector(cfg, Config(), http)
        with pytest.raises(SourceError) as info:
            await collect(source.poll(stream_of(xfake), None))
    assert info.value.status == 401 and not info.value.retryable
    assert "bearer token was refused" in str(info.value)
    assert "developer.x.com" in str(info.value) and "wrong" not in str(info.value)


async def test_a_since_id_past_the_window_starts_the_stream_over(
    http: HttpClient, xfake: XFake, caplog: pytest.LogCaptureFixture
) -> None:
    old = tweet_snowflake(datetime.now(UTC) - timedelta(days=9), 0)
    source = collector(http, xfake, backfill_pages=50)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(stream_of(xfake), Cursor("x", "s", old)))
    assert {p.key for b in batches for p in b.posts} == want_ids(xfake)
    assert "refused since_id" in caplog.text


def test_the_import_preset_and_the_collector_agree(tmp_path: Path, xfake: XFake) -> None:
    """The same API answer, saved as a JSONL line, gives the same posts as the collector."""
    import asyncio

    answer = httpx.get(f"{xfake.url}/2/tweets/search/recent", params={
        "query": "#metoo -is:retweet", "max_results": 100, "expansions": "author_id"},
        headers={"Authorization": f"Bearer {BEARER}"}).json()
    path = tmp_path / "search.jsonl"
    # one whole answer per line (as twarc2 writes), then one bare tweet per line
    path.write_text(json.dumps(answer) + "\n"
                    + "\n".join(json.dumps(t) for t in answer["data"][:3]) + "\n")
    imported = [item.post for item in read_posts(path, "twitter", PRESETS["twitter-v2"])
                if isinstance(item, Row)]

    async def live() -> list[Batch]:
        async with HttpClient(FAST) as http:
            return await collect(collector(http, xfake, backfill_pages=5).poll(
                stream_of(xfake), None))

    collected = {p.key: p for b in asyncio.run(live()) for p in b.posts}
    from_answer = imported[:len(answer["data"])]
    assert len(from_answer) == len(collected)
    for post in from_answer:
        twin = collected[post.key]
        assert post == twin.__class__(**{**_fields(twin), "raw_size": post.raw_size})
    # a bare tweet has no includes: the author falls back to the author_id
    bare = imported[len(answer["data"]):]
    assert [p.author for p in bare] == [t["author_id"] for t in answer["data"][:3]]


def _fields(post: object) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(post, f.name) for f in fields(post)}  # type: ignore[arg-type]


def test_the_import_preset_rejects_bad_lines_and_takes_no_map(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "1460323737035677698", "text": "hi #MeToo", '
                    '"entities": {"hashtags": [{"tag": "MeToo"}]}}\n'
                    '{"data": [{"id": "2", "text": 5, "created_at": "2025-01-02T03:04:05Z"}, '
                    '{"id": "3", "text": "ok", "created_at": "2025-01-02T03:04:05Z"}]}\n'
                    "not json\n")
    items = list(read_posts(path, "twitter", PRESETS["twitter-v2"]))
    rows = [i for i in items if isinstance(i, Row)]
    bad = [str(i) for i in items if isinstance(i, Rejected)]
    # created_at absent: taken from the snowflake id
    assert rows[0].post.created_at.year == 2021 and rows[0].post.tags == ("MeToo",)
    assert [r.post.key for r in rows] == ["1460323737035677698", "3"]
    assert bad[0] == f"{path}:2: tweet 2: text: missing or not a string"
    assert bad[1].startswith(f"{path}:3: invalid JSON")
    from monitor.errors import InputError

    with pytest.raises(InputError, match="takes no --map"):
        list(read_posts(path, "twitter", {**PRESETS["twitter-v2"], "author": "user"}))
