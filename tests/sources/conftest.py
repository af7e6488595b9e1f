"""Fixtures for the collector tests: a seeded world, fake platforms on loopback, a fast client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from monitor.sources.http import HttpClient
from monitor.sources.settings import HttpSettings
from tests.fakes.bluesky import BlueskyFake, start_bluesky_fake
from tests.fakes.data import World
from tests.fakes.mastodon import MastodonFake, start_mastodon_fake

# Small waits so retry and rate-limit tests finish in well under a second each.
FAST = HttpSettings(
    contact="tests@example.org",
    timeout=timedelta(seconds=2),
    max_retries=3,
    backoff_base=timedelta(milliseconds=10),
    backoff_max=timedelta(seconds=2),
    per_host_concurrency=4,
    per_host_min_interval=timedelta(0),
)


@pytest.fixture
def world() -> World:
    return World(seed=11, hours=2, mastodon_posts=60, bluesky_posts=40)


@pytest.fixture
def masto_a(world: World) -> Iterator[MastodonFake]:
    fake = start_mastodon_fake(world, "a")
    yield fake
    fake.stop()


@pytest.fixture
def masto_b(world: World) -> Iterator[MastodonFake]:
    fake = start_mastodon_fake(world, "b")
    yield fake
    fake.stop()


@pytest.fixture
def bsky(world: World) -> Iterator[BlueskyFake]:
    fake = start_bluesky_fake(world)
    yield fake
    fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(FAST) as client:
        yield client
