"""The Reddit collector against the fake Reddit on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.errors import ConfigError, RateLimited, SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.ratelimit import REDDIT
from monitor.sources.reddit import RedditCollector, RedditSource, tag_words
from tests.fakes.reddit import CLIENT_ID, CLIENT_SECRET, RedditFake, start_reddit_fake
from tests.sources.conftest import FAST


@pytest.fixture
def reddit() -> Iterator[RedditFake]:
    fake = start_reddit_fake(posts=80)
    yield fake
    fake.stop()


def collector(http: HttpClient, fake: RedditFake, **options: object) -> RedditCollector:
    cfg = RedditSource.model_validate({
        "type": "reddit", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "auth_url": fake.url, "api_url": fake.url, "tags": ["metoo"], **options})
    return RedditCollector(cfg, Config(), http)


def search(fake: RedditFake, tag: str = "metoo") -> StreamKey:
    return StreamKey("reddit", fake.host, tag)


async def collect(gen: AsyncIterator[Batch]) -> list[Batch]:
    return [batch async for batch in gen]


def want(fake: RedditFake, tag: str = "metoo") -> set[str]:
    return {p.name for p in fake.kept((tag,))}


def test_missing_credentials_are_one_config_line_saying_where_to_get_them(
    tmp_path: Path
) -> None:
    from monitor.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text("sources:\n  - type: reddit\n    client_id: ${REDDIT_CLIENT_ID:-}\n"
                    "    client_secret: ${REDDIT_CLIENT_SECRET:-}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3: sources[0].client_id: expected your Reddit app's "
                              "credentials")
    assert "https://www.reddit.com/prefs/apps" in message


def test_tag_words_match_words_not_parts() -> None:
    words = tag_words(["metoo", "ididit"])
    found = [m.group(1).lower() for m in words.finditer(
        "#MeToo and metoo, but not #MeTooMovement nor xmetoo; IDidIt!")]
    assert found == ["metoo", "metoo", "ididit"]


async def test_first_run_gets_a_token_and_backfills_oldest_page_first(
    http: HttpClient, reddit: RedditFake
) -> None:
    source = collector(http, reddit, page_limit=7, backfill_pages=100)
    batches = await collect(source.poll(search(reddit), None))
    keys = [p.key for b in batches for p in b.posts]
    assert len(keys) == len(set(keys)) and set(keys) == want(reddit)
    # decoys (search hits without the tag word) are not stored
    assert all(p.tags and "metoo" in p.tags for b in batches for p in b.posts)
    names = [b.cursor.value.split("@")[0] for b in batches if b.cursor]
    assert names == sorted(names, key=lambda n: (len(n), n))  # oldest page first
    token_requests = reddit.api_requests("/access_token")
    assert len(token_requests) == 1 and reddit.tokens_issued == 1
    listings = reddit.api_requests("/search")
    assert listings[0].param("sort") == "new" and listings[0].param("q") == "metoo"
    assert [r.param("after") is None for r in listings] == [True] + [False] * (len(listings) - 1)
    assert all(r.headers["authorization"].startswith("bearer ") for r in listings)


async def test_polls_with_before_and_catch_up_page_by_page(
    http: HttpClient, reddit: RedditFake
) -> None:
    source = collector(http, reddit, page_limit=5)
    stream = search(reddit)
    cursor = (await collect(source.poll(stream, None)))[-1].cursor
    assert cursor is not None
    added = [reddit.add_post(("metoo",)) for _ in range(12)]
    before = len(reddit.api_requests("/search"))
    batches = await collect(source.poll(stream, cursor))
    assert sorted(p.key for b in batches for p in b.posts) == sorted(p.name for p in added)
    assert [len(b.posts) for b in batches] == [5, 5, 2]
    anchors = [r.param("before") for r in reddit.api_requests("/search")[before:]]
    assert anchors[0] == cursor.value.split("@")[0]
    assert anchors[1:] == [b.cursor.value.split("@")[0] for b in batches[:-1] if b.cursor]
    last = batches[-1].cursor
    assert last is not None and last.value.startswith(added[-1].name + "@")
    # nothing new: the empty answer is checked with one limit=1 request
    before = len(reddit.api_requests("/search"))
    assert await collect(source.poll(stream, last)) == [Batch(stream=stream)]
    checks = reddit.api_requests("/search")[before:]
    assert [r.param("limit") for r in checks] == ["5", "1"]


async def test_a_deleted_anchor_is_caught_up_by_time(
    http: HttpClient, reddit: RedditFake, caplog: pytest.LogCaptureFixture
) -> None:
    source = collector(http, reddit, page_limit=5)
    stream = search(reddit)
    anchor = reddit.add_post(("metoo",))
    cursor = Cursor("reddit", stream.name, f"{anchor.name}@{anchor.created_at.timestamp()}")
    reddit.remove(anchor)  # Reddit now lists nothing "before" it
    added = [reddit.add_post(("metoo",)) for _ in range(7)]
    with caplog.at_level(logging.INFO, "monitor.sources"):
        batches = await collect(source.poll(stream, cursor))
    assert sorted(p.key for b in batches for p in b.posts) == sorted(p.name for p in added)
    assert "no longer listed" in caplog.text
    assert batches[-1].cursor is not None
    assert batches[-1].cursor.value.startswith(added[-1].name + "@")


async def test_subreddit_streams_keep_only_posts_with_a_followed_tag_word(
    http: HttpClient, reddit: RedditFake
) -> None:
    source = collector(http, reddit, subreddits=["r/MensLib"], tags=["metoo", "ididit"])
    [stream] = source.streams()
    assert stream == StreamKey("reddit", f"{reddit.host}/r/MensLib", "*")
    reddit.add_post(("notallmen",), subreddit="MensLib")
    batches = await collect(source.poll(stream, None))
    got = {p.key: p for b in batches for p in b.posts}
    expected = {p.name for p in reddit.kept(("metoo", "ididit"))
                if p.subreddit == "MensLib"}
    assert set(got) == expected
    assert reddit.api_requests("/r/MensLib/new")


async def test_post_fields(http: HttpClient, reddit: RedditFake) -> None:
    anchor = reddit.add_post(("metoo",), created_at=datetime.now(UTC) - timedelta(seconds=5))
    post = reddit.add_post(("metoo", "ididit"))
    source = collector(http, reddit, tags=["metoo", "ididit"])
    cursor = Cursor("reddit", "s", f"{anchor.name}@{anchor.created_at.timestamp()}")
    [got] = [p for b in await collect(source.poll(search(reddit), cursor)) for p in b.posts]
    assert got.key == post.name and got.platform == "reddit"
    assert got.created_at == datetime.fromtimestamp(post.created_at.timestamp(), tz=UTC)
    assert got.url == f"https://www.reddit.com/r/{post.subreddit}/comments/{post.id}/slug/"
    assert got.author == post.author and got.lang is None and got.html is None
    assert got.text is not None and got.text.startswith(post.title)
    assert set(got.tags) == {"metoo", "ididit"}


async def test_malformed_posts_are_skipped_with_one_line_each(
    http: HttpClient, reddit: RedditFake, caplog: pytest.LogCaptureFixture
) -> None:
    start = reddit.posts[-1]
    posts = [reddit.add_post(("metoo",)) for _ in range(4)]
    reddit.corrupt(posts[0], "created_utc", "yesterday")
    reddit.corrupt(posts[1], "title", 42)
    source = collector(http, reddit)
    cursor = Cursor("reddit", "s", f"{start.name}@{start.created_at.timestamp()}")
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        batches = await collect(source.poll(search(reddit), cursor))
    assert sum(b.rejected for b in batches) == 2
    assert {p.key for b in batches for p in b.posts} == {posts[2].name, posts[3].name}
    lines = sorted(r.getMessage() for r in caplog.records)
    assert lines == sorted([
        f"reddit: skipped post {posts[0].name} on search #metoo: field created_utc expected "
        "epoch seconds, got str",
        f"reddit: skipped post {posts[1].name} on search #metoo: field title expected a "
        "string, got int",
    ])


async def test_rate_limit_reset_is_seconds_left(http: HttpClient, reddit: RedditFake) -> None:
    source = collector(http, reddit)
    assert http.budgets.of(reddit.host).scheme is REDDIT
    reddit.faults.rate_limit_next(1, seconds=1.0)
    started = time.monotonic()
    batches = await collect(source.poll(search(reddit), None))
    assert time.monotonic() - started >= 0.9  # "1" second left, then retried
    assert sum(len(b.posts) for b in batches) > 0
    # the window's last request blocks the host for the seconds left: next tick skipped
    reddit.set_rate_limit(2, 120.0)
    await collect(source.poll(search(reddit), None))
    await collect(source.poll(search(reddit), None))
    with pytest.raises(RateLimited) as info:
        await collect(source.poll(search(reddit), None))
    # seconds left, not an epoch: a wait of about two minutes, not "already past"
    assert 100 < info.value.retry_after <= 121


async def test_expired_token_is_renewed_once(http: HttpClient, reddit: RedditFake) -> None:
    source = collector(http, reddit)
    await collect(source.poll(search(reddit), None))
    reddit.expire_tokens()
    batches = await collect(source.poll(search(reddit), None))
    assert sum(len(b.posts) for b in batches) > 0
    assert reddit.tokens_issued == 2


async def test_wrong_credentials_and_private_subreddits_are_one_line_errors(
    reddit: RedditFake,
) -> None:
    async with HttpClient(FAST) as http:
        cfg = RedditSource.model_validate({
            "type": "reddit", "client_id": CLIENT_ID, "client_secret": "nope",
            "auth_url": reddit.url, "api_url": reddit.url, "tags": ["metoo"]})
        with pytest.raises(SourceError) as info:
            await collect(RedditCollector(cfg, Config(), http).poll(search(reddit), None))
        assert info.value.status == 401 and not info.value.retryable
        assert "client_id/client_secret were refused" in str(info.value)
        assert "nope" not in str(info.value) and "prefs/apps" in str(info.value)
        reddit.private.add("news")
        source = collector(http, reddit, subreddits=["news"])
        with pytest.raises(SourceError) as info:
            await collect(source.poll(source.streams()[0], None))
        assert str(info.value) == ("reddit: r/news: HTTP 403 (private or quarantined): remove it "
                                   "from subreddits")


async def test_5xx_and_malformed_answers(http: HttpClient, reddit: RedditFake) -> None:
    reddit.faults.fail_next(2, status=502)
    reddit.faults.truncate_next(1)
    batches = await collect(collector(http, reddit).poll(search(reddit), None))
    assert sum(len(b.posts) for b in batches) > 0
    reddit.faults.wrong_shape_next(1)
    with pytest.raises(SourceError) as info:
        await collect(collector(http, reddit).poll(search(reddit), None))
    assert info.value.retryable and "expected a Listing" in str(info.value)


def test_cursor_time_survives_a_restart() -> None:
    # the cursor text carries the anchor's time, so a restarted collector can check it
    from monitor.sources.reddit import _anchor

    assert _anchor("t3_abc@1732000000.5") == ("t3_abc", 1732000000.5)
    assert _anchor("t3_abc") == ("t3_abc", None)
    assert _anchor("t3_abc@junk") == ("t3_abc", None)
