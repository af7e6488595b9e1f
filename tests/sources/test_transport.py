"""One HTTP path: polls, logins, the Mastodon live stream and the Jetstream handshake all
wait, retry and back off in the same place, against real fake servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta

import pytest

from monitor.config import Config
from monitor.errors import SourceError
from monitor.models import Batch, StreamKey
from monitor.sources.bluesky import BlueskySearchCollector
from monitor.sources.http import HttpClient
from monitor.sources.jetstream import JetstreamCollector
from monitor.sources.mastodon_live import MastodonLiveCollector
from monitor.sources.settings import BlueskySearchSource, MastodonSource
from tests.fakes.bluesky import APP_PASSWORD, IDENTIFIER, BlueskyFake, start_bluesky_fake
from tests.fakes.data import World
from tests.fakes.jetstream import JetstreamFake
from tests.fakes.mastodon import MastodonFake
from tests.sources.conftest import FAST

STREAM_PATH = "/streaming/hashtag"


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def timeline(fake: MastodonFake, tag: str = "metoo") -> str:
    return f"{fake.url}/api/v1/timelines/tag/{tag}"


@contextlib.asynccontextmanager
async def live_stream(http: HttpClient, fake: MastodonFake) -> AsyncIterator[
        MastodonLiveCollector]:
    """The live collector of *fake*'s #metoo, running until the block ends."""
    cfg = MastodonSource.model_validate({"type": "mastodon", "instances": [fake.url],
                                         "tags": ["metoo"], "streaming": True})
    source = MastodonLiveCollector(cfg, Config(), http)

    async def sink(batch: Batch) -> None:
        return None

    task = asyncio.create_task(source.run(None, sink))
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------------------- the live stream


async def test_live_stream_connect_keeps_the_hosts_min_interval(masto_a: MastodonFake) -> None:
    settings = FAST.model_copy(update={"per_host_concurrency": 1,
                                       "per_host_min_interval": timedelta(milliseconds=300)})
    async with HttpClient(settings) as http:
        await http.get_json(timeline(masto_a))
        async with live_stream(http, masto_a) as source:
            await wait_for(lambda: bool(source.connected))
            await http.get_json(timeline(masto_a, "notallmen"))
    starts = [r.at for r in sorted(masto_a.api_requests(), key=lambda r: r.at)]
    paths = [r.path for r in sorted(masto_a.api_requests(), key=lambda r: r.at)]
    # poll, instance info, stream connect, poll: every start spaced by the host's interval
    assert paths[2].endswith(STREAM_PATH) and len(paths) == 4
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.27


async def test_live_stream_holds_a_slot_to_connect_but_not_while_open(
    masto_a: MastodonFake,
) -> None:
    settings = FAST.model_copy(update={"per_host_concurrency": 1})
    masto_a.stream_faults.stall_next(1, seconds=0.6)  # a slow connect
    async with HttpClient(settings) as http, live_stream(http, masto_a) as source:
        await wait_for(lambda: bool(masto_a.api_requests(STREAM_PATH)))
        await http.get_json(timeline(masto_a))
        connect_at = masto_a.api_requests(STREAM_PATH)[0].at
        poll_at = masto_a.api_requests("/timelines/")[0].at
        # the only slot of the host was the connecting stream's: the poll waited for it
        assert poll_at - connect_at >= 0.5
        await wait_for(lambda: bool(source.connected))
        # once open, the stream holds no slot: polls are not starved for its lifetime
        started = time.monotonic()
        for tag in ("metoo", "notallmen", "ididit"):
            await http.get_json(timeline(masto_a, tag))
        assert time.monotonic() - started < 0.5
        assert source.connected


async def test_a_429_on_the_live_stream_holds_back_the_whole_host(
    http: HttpClient, masto_a: MastodonFake,
) -> None:
    # Mastodon sends no Retry-After: the wait comes from the ISO X-RateLimit-Reset
    masto_a.stream_faults.rate_limit_next(1, seconds=0.6)
    async with live_stream(http, masto_a) as source:
        await wait_for(lambda: bool(masto_a.api_requests(STREAM_PATH)))
        refused_at = masto_a.api_requests(STREAM_PATH)[0].at
        await asyncio.sleep(0.15)
        await http.get_json(timeline(masto_a))  # another stream of the same host
        await wait_for(lambda: bool(source.connected))
    retried_at = masto_a.api_requests(STREAM_PATH)[1].at
    poll_at = masto_a.api_requests("/timelines/")[0].at
    assert retried_at - refused_at >= 0.45
    assert poll_at - refused_at >= 0.45, "the poll went out while the host asked us to wait"


async def test_a_5xx_on_the_live_stream_connect_is_retried_by_the_transport(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture,
) -> None:
    masto_a.stream_faults.fail_next(2, status=503)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        async with live_stream(http, masto_a) as source:
            await wait_for(lambda: bool(source.connected))
    lines = [r.getMessage() for r in caplog.records]
    assert len(masto_a.api_requests(STREAM_PATH)) == 3
    assert sum("HTTP 503; retrying in" in line and "#metoo live" in line
               for line in lines) == 2
    assert not any("reconnecting" in line for line in lines), \
        "a failed connect is the transport's retry, not a dropped stream"


# ---------------------------------------------------------------------------- other paths


@pytest.fixture
def authed(world: World) -> Iterator[BlueskyFake]:
    fake = start_bluesky_fake(world, require_auth=True)
    yield fake
    fake.stop()


async def test_a_429_with_retry_after_on_the_bluesky_login_is_honoured(
    http: HttpClient, authed: BlueskyFake,
) -> None:
    authed.session_faults.rate_limit_next(1, seconds=0.5)
    cfg = BlueskySearchSource.model_validate({
        "type": "bluesky_search", "appview": authed.url, "pds": authed.url,
        "identifier": IDENTIFIER, "app_password": APP_PASSWORD})
    source = BlueskySearchCollector(cfg, Config(), http)
    stream = StreamKey("bluesky-search", authed.url.split("://")[1], "metoo")
    batches = [b async for b in source.poll(stream, None)]
    assert any(b.posts for b in batches)
    logins = authed.api_requests("createSession")
    assert len(logins) == 2 and authed.sessions_created == 1
    assert logins[1].at - logins[0].at >= 0.45


async def test_a_429_on_the_jetstream_handshake_blocks_the_host_for_http_too() -> None:
    fake = JetstreamFake()
    try:
        fake.refuse_next(1, retry_after=0.6)
        # the same host twice: the first refusal must not end the run
        config = Config(sources=[{"type": "jetstream", "hosts": [fake.url, fake.url],
                                  "batch_interval": "0.05s"}],
                        http={"backoff_base": "0.05s", "backoff_max": "2s",
                              "per_host_min_interval": "0s"})
        cfg = config.sources[0]
        assert cfg.type == "jetstream"
        async with HttpClient(config.http) as http:
            collector = JetstreamCollector(cfg, config, http.budgets)

            async def sink(batch: Batch) -> None:
                return None

            task = asyncio.create_task(collector.run(None, sink))
            try:
                await wait_for(lambda: bool(fake.refusals))
                await asyncio.sleep(0.1)
                # a plain HTTP request to that host waits out the same block
                with pytest.raises(SourceError):
                    await http.get_json(f"http://127.0.0.1:{fake.port}/health")
                http_done = time.monotonic()
                await wait_for(lambda: bool(fake.subscriptions))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert fake.subscriptions[0].at - fake.refusals[0] >= 0.55
        assert http_done - fake.refusals[0] >= 0.55
    finally:
        fake.stop()
