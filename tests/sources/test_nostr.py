"""The Nostr collector against real websocket relays on 127.0.0.1 (tests/fakes/nostr.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from monitor.config import Config
from monitor.errors import SourceError
from monitor.models import Batch, Cursor
from monitor.sources.nostr import NostrCollector, nostr_collectors, tag_variants
from monitor.sources.nostr_events import NostrFilter, event_id, parse_event, post_key
from monitor.sources.ratelimit import HostBudgets
from tests.fakes.nostr import (
    NostrRelayFake,
    NostrWorld,
    deletion,
    key_of,
    note,
    sign_event,
    with_bad_signature,
)

TAGS = ["metoo", "howiwillchange", "notallmen", "ididit"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(*relays: str, **extra: Any) -> Config:
    source = {"type": "nostr", "relays": list(relays), "batch_interval": "0.05s",
              "overlap": "60s", **extra}
    return Config(hashtags=TAGS, sources=[source],
                  http={"backoff_base": "0.05s", "backoff_max": "0.2s"})


def collectors(config: Config) -> list[NostrCollector]:
    cfg = config.sources[0]
    assert cfg.type == "nostr"
    return nostr_collectors(cfg, config, HostBudgets(config.http))  # type: ignore[arg-type]


class Running:
    """A collector's run() in a task, with every batch it handed over."""

    def __init__(self, col: NostrCollector, cursor: Cursor | None = None,
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
    def rejected(self) -> int:
        return sum(b.rejected for b in self.batches)

    @property
    def cursor(self) -> Cursor | None:
        cursors = [b.cursor for b in self.batches if b.cursor]
        return cursors[-1] if cursors else None

    async def until(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.task.done():
                self.task.result()
                raise AssertionError("collector stopped")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the collector")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        # a run that already failed was checked by its test
        with contextlib.suppress(asyncio.CancelledError, SourceError):
            await self.task


@pytest.fixture
def world() -> NostrWorld:
    return NostrWorld(seed=5, posts=30, hours=2)


@pytest.fixture
def relays(world: NostrWorld) -> Iterator[list[NostrRelayFake]]:
    started = [NostrRelayFake(world.events()), NostrRelayFake(world.events())]
    yield started
    for relay in started:
        relay.stop()


@pytest.fixture
async def running() -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        await run.stop()


# ---------------------------------------------------------------------------- verification


def test_event_id_follows_nip01_serialisation() -> None:
    # a known event from the NIP-01 reference implementations' tests (nostr-tools)
    pubkey = "6e468422dfb74a5738702a8823b9b28168abab8655faacb6853cd0ee15deee93"
    content = 'tab\there, "quote", back\\slash, newline\nand é 😀'
    expected = json.dumps([0, pubkey, 1700000000, 1, [["t", "metoo"]], content],
                          separators=(",", ":"), ensure_ascii=False)
    assert '\\t' in expected and '\\"' in expected and "é" in expected and "😀" in expected
    import hashlib
    assert event_id(pubkey, 1700000000, 1, [["t", "metoo"]], content) == \
        hashlib.sha256(expected.encode()).hexdigest()


def test_verified_note_becomes_a_post_and_bad_ones_are_rejected() -> None:
    flt = NostrFilter(TAGS)
    good = note("alice", 1_760_000_000, "Listening. #MeToo", ["metoo"],
                [["content-warning", "sv"], ["l", "fr", "ISO-639-1"]])
    what, post, eid, created = parse_event(good, flt, 321)
    assert what == "post" and eid == good["id"] and created == 1_760_000_000
    assert post.platform == "nostr" and post.key == key_of(good)  # type: ignore[union-attr]
    assert post.author == good["pubkey"] and post.text == good["content"]  # type: ignore[union-attr]
    assert post.tags == ("metoo",) and post.sensitive and post.lang == "fr"  # type: ignore[union-attr]
    assert good["pubkey"] not in post.key  # type: ignore[union-attr]

    from monitor.sources.nostr_events import EventRejected
    with pytest.raises(EventRejected, match="sig"):
        parse_event(with_bad_signature(good), flt)
    with pytest.raises(EventRejected, match="id does not match"):
        parse_event(dict(good, content="Edited after signing #MeToo"), flt)
    with pytest.raises(EventRejected, match="created_at"):
        parse_event(dict(good, created_at="yesterday"), flt)
    with pytest.raises(EventRejected, match="pubkey"):
        parse_event(dict(good, pubkey="npub1xyz"), flt)
    # a note with no followed tag is skipped without the cost of verifying it
    other = dict(note("bob", 1_760_000_000, "gm #nostr", ["nostr"]), sig="00" * 64)
    assert parse_event(other, flt)[0] == "skip"


def test_deletion_keys_bind_the_author() -> None:
    flt = NostrFilter(TAGS)
    post = note("alice", 1_760_000_000, "x #metoo", ["metoo"])
    own = deletion("alice", 1_760_000_100, [post["id"]])
    forged = deletion("mallory", 1_760_000_100, [post["id"]])
    assert parse_event(own, flt)[1] == (key_of(post),)
    assert parse_event(forged, flt)[1] != (key_of(post),)
    assert post_key(post["id"], post["pubkey"]) == key_of(post)


def test_tag_variants_cover_sloppy_clients() -> None:
    assert tag_variants(["metoo"]) == ["metoo", "METOO", "Metoo"]


# ---------------------------------------------------------------------------- collecting


async def test_two_relays_each_post_once_bad_signature_and_duplicate_dropped(
        world: NostrWorld, relays: list[NostrRelayFake], running: list[Running],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor.sources.nostr")
    config = make_config(relays[0].url, relays[1].url)
    runs = [Running(c) for c in collectors(config)]
    running.extend(runs)
    expected = {k for _, k in world.expected_keys()}
    await runs[0].until(lambda: sum(r.col.eose for r in runs) >= 2
                        and len({k for r in runs for k in r.keys}) >= len(expected))
    await asyncio.sleep(0.2)
    keys = [k for r in runs for k in r.keys]
    assert sorted(keys) == sorted(expected)  # every note once, across both relays
    # the note written with t=METOO arrived thanks to the case variants in the REQ
    sub = relays[0].subscriptions[0]
    assert "METOO" in sub.filters[0]["#t"] and sub.filters[1] == {
        "kinds": [5], "since": sub.filters[0]["since"]}
    # the bad signature: rejected once, one line naming platform, id and field, no text
    assert sum(r.rejected for r in runs) == 1
    bad = [r.getMessage() for r in caplog.records if "skipped event" in r.getMessage()]
    assert len(bad) == 1
    assert bad[0] in {f"nostr: skipped event {world.bad['id']} from 127.0.0.1:{r.port}: "
                      "field sig is not a valid schnorr signature by pubkey" for r in relays}
    assert "Forged" not in caplog.text and world.bad["pubkey"] not in caplog.text
    # the relay's own duplicate was dropped and counted
    assert world.duplicate is not None
    assert sum(r.col.duplicates for r in runs) >= 1
    dup_lines = [r for r in caplog.records if "duplicate dropped" in r.getMessage()
                 and world.duplicate["id"] in r.getMessage()]
    assert len(dup_lines) >= 1
    # the forged deletion names a key no stored post has
    assert set(k for r in runs for k in r.deleted).isdisjoint(expected)
    assert all(r.cursor is not None for r in runs)


async def test_deletion_by_the_author_is_emitted_live(world: NostrWorld,
                                                      running: list[Running]) -> None:
    with NostrRelayFake(world.events()) as relay:
        run = Running(collectors(make_config(relay.url))[0])
        running.append(run)
        await run.until(lambda: run.col.eose == 1)
        target = world.posts[3]
        relay.publish([deletion("author3", int(time.time()),
                                [target.event["id"]], "posted by mistake")])
        await run.until(lambda: target.key in run.deleted)
        await run.stop()


async def test_cursor_is_newest_created_at_and_a_restart_resumes_with_overlap(
        world: NostrWorld, running: list[Running]) -> None:
    with NostrRelayFake(world.events()) as relay:
        config = make_config(relay.url)
        run = Running(collectors(config)[0])
        running.append(run)
        await run.until(lambda: run.col.eose == 1 and run.cursor is not None)
        await asyncio.sleep(0.1)
        newest = max(e["created_at"] for e in world.events() if e is not world.bad
                     and e["kind"] == 1 and any(t[0] == "t" and t[1].lower() in TAGS
                                                for t in e["tags"]))
        saved = run.cursor
        assert saved is not None and int(saved.value) >= newest
        assert saved.stream == f"127.0.0.1:{relay.port}#*"
        await run.stop()
        # while we were away
        fresh = note("late", int(time.time()) - 5, "Later. #NotAllMen", ["notallmen"])
        relay.publish([fresh])
        again = Running(collectors(config)[0], cursor=saved)
        running.append(again)
        await again.until(lambda: key_of(fresh) in again.keys)
        assert relay.subscriptions[-1].filters[0]["since"] == int(saved.value) - 60
        # the restart only replayed the overlap, not the whole backfill
        assert len(again.keys) < len(world.posts)


async def test_relay_that_drops_is_reconnected_without_losing_events(
        world: NostrWorld, running: list[Running]) -> None:
    with NostrRelayFake(world.events()) as relay:
        relay.drop_after(10)
        run = Running(collectors(make_config(relay.url))[0])
        running.append(run)
        await run.until(lambda: set(run.keys) == {k for _, k in world.expected_keys()})
        assert len(relay.subscriptions) >= 2


async def test_closed_notice_and_garbage_do_not_stop_the_collector(
        world: NostrWorld, running: list[Running], caplog: pytest.LogCaptureFixture) -> None:
    with NostrRelayFake(world.events()) as relay:
        relay.close_next("rate-limited: slow down")
        run = Running(collectors(make_config(relay.url))[0])
        running.append(run)
        await run.until(lambda: run.col.eose >= 1)
        assert "subscription closed by the relay (rate-limited: slow down)" in caplog.text
        relay.notice("restarting soon")
        relay.publish_raw([b"not json at all", b'["EVENT","x",{"id":42}]'])
        fresh = note("live", int(time.time()), "Live #IDidIt", ["ididit"])
        relay.publish([fresh])
        await run.until(lambda: key_of(fresh) in run.keys)
        assert "relay notice: restarting soon" in caplog.text
        assert run.rejected >= 1


async def test_dead_relay_is_reported_while_the_other_keeps_collecting(
        world: NostrWorld, running: list[Running]) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    with NostrRelayFake(world.events()) as relay:
        cols = collectors(make_config(dead, relay.url))
        runs = [Running(c) for c in cols]
        running.extend(runs)
        with pytest.raises(SourceError, match="attempts in a row"):
            await asyncio.wait_for(runs[0].task, 10)
        await runs[1].until(lambda: set(runs[1].keys) == {k for _, k in world.expected_keys()})


async def test_handshake_429_blocks_the_host_then_connects(world: NostrWorld,
                                                           running: list[Running]) -> None:
    with NostrRelayFake(world.events()) as relay:
        # within backoff_max (0.2s) the connect waits the block out instead of giving
        # up a try; a longer wait would make the outcome depend on the backoff's jitter
        relay.refuse_next(1, retry_after=0.15)
        run = Running(collectors(make_config(relay.url))[0])
        running.append(run)
        started = time.monotonic()
        await run.until(lambda: run.col.eose == 1)
        assert relay.refusals == 1 and time.monotonic() - started >= 0.12


async def test_bad_saved_cursor_falls_back_to_the_backfill(world: NostrWorld,
                                                           running: list[Running]) -> None:
    with NostrRelayFake(world.events()) as relay:
        run = Running(collectors(make_config(relay.url))[0],
                      cursor=Cursor("nostr", "x#*", "not-a-time"))
        running.append(run)
        await run.until(lambda: run.col.eose == 1)
        since = relay.subscriptions[0].filters[0]["since"]
        assert abs(since - (time.time() - 24 * 3600)) < 60


def test_sign_event_roundtrip() -> None:
    event = sign_event("x", 1_760_000_000, 1, [["t", "metoo"]], "hi #metoo")
    assert parse_event(event, NostrFilter(TAGS))[0] == "post"
