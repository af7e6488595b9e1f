"""Issue 11: a firehose that cannot stop for good — oversized events are skipped past,
and the starting position is saved as soon as it is known."""

from __future__ import annotations

import asyncio
import logging

import pytest

from monitor.sources.jetstream import FRAME_LIMIT, MAX_JSON_RECORD_BYTES
from tests.fakes.jetstream import JetstreamFake, identity_event
from tests.sources.test_jetstream import (
    Running,
    collector,
    fake,  # noqa: F401  (fixture)
    make_config,
    post_event,
    running,  # noqa: F401  (fixture)
    subscribed,
)


def test_the_frame_limit_comes_from_the_record_size_limit() -> None:
    # atproto: 1,000,000 bytes of CBOR per record, 2 MiB as JSON; plus the envelope
    assert MAX_JSON_RECORD_BYTES == 2 * 1024 * 1024
    assert MAX_JSON_RECORD_BYTES < FRAME_LIMIT <= MAX_JSON_RECORD_BYTES + 128 * 1024


async def test_an_oversized_event_is_skipped_once_and_counted(
        fake: JetstreamFake, running: list[Running],  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "monitor.sources.jetstream")
    run = Running(collector(make_config(fake.url)))
    running.append(run)
    await subscribed(fake)
    huge = "#metoo " + "x" * (6_500_000)  # 6.5 MB: larger than any valid record
    stamps = fake.publish([post_event("did:plc:a", "3la", "before #metoo", facets=["metoo"]),
                           post_event("did:plc:b", "3lhuge", huge, facets=["metoo"]),
                           post_event("did:plc:c", "3lc", "after #metoo", facets=["metoo"])])
    await run.until(lambda: "at://did:plc:c/app.bsky.feed.post/3lc" in run.keys)
    assert sorted(run.keys) == ["at://did:plc:a/app.bsky.feed.post/3la",
                                "at://did:plc:c/app.bsky.feed.post/3lc"]
    assert sum(b.rejected for b in run.batches) == 1
    assert len(fake.subscriptions) == 1  # read past, never a reconnect loop
    assert fake.subscriptions[0].cursor is None
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and f"time_us={stamps[1]}" in lines[0]
    assert "6.2 MiB" in lines[0]


async def test_an_event_too_large_to_read_is_stepped_past(
        fake: JetstreamFake, running: list[Running],  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "monitor.sources.jetstream")
    col = collector(make_config(fake.url))
    col.frame_limit, col.read_limit = 16 * 1024, 64 * 1024  # small, so the test is fast
    run = Running(col)
    running.append(run)
    await subscribed(fake)
    stamps = fake.publish([post_event("did:plc:a", "3la", "before #metoo", facets=["metoo"]),
                           post_event("did:plc:b", "3lhuge", "#metoo " + "y" * 200_000,
                                      facets=["metoo"]),
                           post_event("did:plc:c", "3lc", "after #metoo", facets=["metoo"])])
    await run.until(lambda: "at://did:plc:c/app.bsky.feed.post/3lc" in run.keys, timeout=20)
    assert "at://did:plc:b/app.bsky.feed.post/3lhuge" not in run.keys
    assert sum(b.rejected for b in run.batches) == 1
    # resumed just after the last event read, never at the same cursor forever
    cursors = [s.cursor or 0 for s in fake.subscriptions[1:]]
    assert cursors[0] == stamps[0] + 1
    assert cursors == sorted(set(cursors)) and stamps[1] < cursors[-1] <= stamps[2]
    # one warning, with the position; the steps are debug lines
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and f"time_us={stamps[0]}" in lines[0], lines
    assert "cannot be read" in lines[0]


async def test_the_starting_position_is_saved_with_the_first_event(
        fake: JetstreamFake, running: list[Running]) -> None:  # noqa: F811
    # batches every 60 s: before, nothing was saved until then, and a drop in
    # between restarted at a later live tail, losing the events in between
    run = Running(collector(make_config(fake.url, batch_interval="60s")))
    running.append(run)
    await subscribed(fake)
    (first,) = fake.publish([identity_event("did:plc:x", "x.bsky.social")])
    await run.until(lambda: run.cursor == first, timeout=5)
    assert run.batches[0].posts == () and run.batches[0].cursor is not None
    await asyncio.sleep(0.1)
    assert len(run.batches) == 1  # once, not a batch per event
