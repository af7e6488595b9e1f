"""The Telegram public-channel collector against a fake t.me preview on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from monitor.config import Config
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.telegram import TelegramCollector, channel_name, parse_page
from tests.fakes.telegram import TelegramFake, TelegramWorld, render_page, start_telegram_fake

TAGS = ["metoo", "howiwillchange", "notallmen", "ididit"]


@pytest.fixture
def tworld() -> TelegramWorld:
    return TelegramWorld(seed=3, per_channel=45)


@pytest.fixture
def tg(tworld: TelegramWorld) -> Iterator[TelegramFake]:
    fake = start_telegram_fake(tworld)
    yield fake
    fake.stop()


def collector(fake: TelegramFake, http: HttpClient, **extra: object) -> TelegramCollector:
    config = Config(hashtags=TAGS, sources=[{"type": "telegram", "base_url": fake.url,
                                             "channels": ["newsroom", "metoo_ru"], **extra}])
    cfg = config.sources[0]
    return TelegramCollector(cfg, config, http)  # type: ignore[arg-type]


async def drain(col: TelegramCollector, stream: StreamKey, cursor: Cursor | None
                ) -> list[Batch]:
    return [b async for b in col.poll(stream, cursor)]


def test_channel_names_are_normalised() -> None:
    assert channel_name("@NewsRoom") == "newsroom"
    assert channel_name("https://t.me/s/newsroom") == "newsroom"
    assert channel_name("t.me/newsroom") == "newsroom"
    with pytest.raises(ValueError, match="public channel name"):
        channel_name("https://t.me/+AbCdEfInvite")


def test_page_parsing_keeps_followed_messages_only(tworld: TelegramWorld) -> None:
    msgs = tworld.messages["newsroom"][:20]
    html = render_page("newsroom", msgs, older=None)
    posts, ids, rejected, before = parse_page(html, "newsroom", frozenset(TAGS))
    assert before is None and ids == [str(m.id) for m in msgs]
    expected = [m for m in msgs if m in tworld.followed()]
    assert [p.key for p in posts] == [m.key for m in expected]
    first = posts[0]
    assert first.platform == "telegram" and first.author == "newsroom"
    assert first.url == f"https://{expected[0].key}"
    assert first.created_at == expected[0].created_at
    assert first.html and "tgme_widget_message_text" in first.html
    assert {p.key for p in posts if p.is_repost} == {m.key for m in expected if m.forwarded}
    # the message without a time: one rejection naming channel, id and field
    assert [(r.ref, r.field) for r in rejected] == [
        (f"newsroom/{m.id}", "time") for m in msgs if m.no_time]


async def test_first_run_backfills_oldest_first_then_polls_forward(
        tg: TelegramFake, tworld: TelegramWorld, http: HttpClient) -> None:
    col = collector(tg, http, backfill_pages=10)
    stream = StreamKey("telegram", "newsroom", "*")
    batches = await drain(col, stream, None)
    cursors = [int(b.cursor.value) for b in batches if b.cursor]
    assert cursors == sorted(cursors) and cursors[-1] == tworld.messages["newsroom"][-1].id
    keys = [p.key for b in batches for p in b.posts]
    assert set(keys) == {m.key for m in tworld.followed() if m.channel == "newsroom"}
    assert len(keys) == len(set(keys))
    # paging used the "load more" link's data-before
    befores = [r.param("before") for r in tg.api_requests("/s/newsroom")]
    assert befores[0] is None and all(b and b.isdigit() for b in befores[1:])

    # later: nothing new is one request and no posts
    tg.requests.clear()
    assert [p for b in await drain(col, stream, batches[-1].cursor) for p in b.posts] == []
    assert len(tg.api_requests("/s/newsroom")) == 1
    # 25 new messages: more than a page, fetched back to the cursor with no gap
    fresh = [tworld.add("newsroom", ("notallmen",)) for _ in range(25)]
    again = await drain(col, stream, batches[-1].cursor)
    assert [p.key for b in again for p in b.posts] == [m.key for m in fresh]
    assert again[-1].cursor is not None and again[-1].cursor.value == str(fresh[-1].id)


async def test_rate_limit_and_server_errors_are_retried(tg: TelegramFake, tworld: TelegramWorld,
                                                        http: HttpClient) -> None:
    col = collector(tg, http)
    tg.faults.rate_limit_next(1, seconds=0.2)
    tg.faults.fail_next(1, status=503)
    batches = await drain(col, StreamKey("telegram", "metoo_ru", "*"), None)
    assert batches and any(b.posts for b in batches)
    assert len(tg.api_requests("/s/metoo_ru")) >= 3


async def test_private_group_fails_with_one_clear_line(tg: TelegramFake, http: HttpClient
                                                       ) -> None:
    col = collector(tg, http)
    with pytest.raises(SourceError, match=r"no public preview.*out of reach by design"):
        await drain(col, StreamKey("telegram", "secretgroup", "*"), None)


async def test_bad_message_is_skipped_with_a_line_and_the_rest_kept(
        tg: TelegramFake, tworld: TelegramWorld, http: HttpClient,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    col = collector(tg, http, backfill_pages=10)
    batches = await drain(col, StreamKey("telegram", "newsroom", "*"), None)
    bad = [m for m in tworld.messages["newsroom"] if m.no_time]
    assert sum(b.rejected for b in batches) == len(bad) == 1
    assert f"telegram: skipped message newsroom/{bad[0].id}: field time missing" in caplog.text
    assert bad[0].text is not None and bad[0].text not in caplog.text
    assert len([p for b in batches for p in b.posts]) == len(
        [m for m in tworld.followed() if m.channel == "newsroom"])
