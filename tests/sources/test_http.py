"""The shared HTTP client against real fake servers on 127.0.0.1: retries, rate limits, budgets."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import socket
import time
from datetime import timedelta

import pytest

from monitor import __version__
from monitor.backoff import Backoff
from monitor.errors import RateLimited, SourceError
from monitor.sources.errors import HttpStatusError, format_wait
from monitor.sources.http import HttpClient
from tests.fakes.bluesky import BlueskyFake
from tests.fakes.mastodon import MastodonFake
from tests.sources.conftest import FAST


def timeline(fake: MastodonFake, tag: str = "metoo") -> str:
    return f"{fake.url}/api/v1/timelines/tag/{tag}"


async def test_user_agent_names_project_version_and_contact(
    http: HttpClient, masto_a: MastodonFake
) -> None:
    await http.get_json(timeline(masto_a))
    sent = masto_a.api_requests()[0].headers["user-agent"]
    assert sent == f"hashtag-monitor/{__version__} (+tests@example.org)"


async def test_5xx_is_retried_until_it_succeeds(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    masto_a.faults.fail_next(2, status=503)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        data, _ = await http.get_json(timeline(masto_a), stream="#metoo")
    assert isinstance(data, list) and data
    assert len(masto_a.api_requests()) == 3
    retry_lines = [r.getMessage() for r in caplog.records if "HTTP 503" in r.getMessage()]
    assert len(retry_lines) == 2
    assert all(masto_a.host in line and "#metoo" in line and "retrying in" in line
               for line in retry_lines)


async def test_5xx_past_max_retries_raises_retryable_error(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    masto_a.faults.fail_next(10, status=502)
    with caplog.at_level(logging.WARNING, "monitor.sources"), \
            pytest.raises(SourceError) as info:
        await http.get_json(timeline(masto_a))
    assert info.value.retryable and info.value.status == 502
    assert len(masto_a.api_requests()) == FAST.max_retries + 1
    # one line per retry; the final failure is the caller's to report, from the message
    assert len(caplog.records) == FAST.max_retries
    assert str(info.value) == f"{masto_a.host}: HTTP 502 after 4 attempts"


async def test_stalled_response_times_out_and_is_retried(
    masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    settings = FAST.model_copy(update={"timeout": timedelta(seconds=0.3)})
    masto_a.faults.stall_next(1, seconds=1.5)
    async with HttpClient(settings) as http:
        with caplog.at_level(logging.WARNING, "monitor.sources"):
            data, _ = await http.get_json(timeline(masto_a))
    assert data
    assert len(masto_a.api_requests()) == 2
    assert any("timed out (read)" in r.getMessage() for r in caplog.records)


async def test_truncated_json_and_html_pages_are_retries_not_crashes(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    masto_a.faults.truncate_next(1)
    masto_a.faults.wrong_type_next(1)
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        data, _ = await http.get_json(timeline(masto_a))
    assert isinstance(data, list) and data
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "truncated or invalid JSON" in messages
    assert "expected JSON, got 'text/html'" in messages


async def test_truncated_json_every_time_ends_in_a_retryable_error(
    http: HttpClient, masto_a: MastodonFake
) -> None:
    masto_a.faults.truncate_next(10)
    with pytest.raises(SourceError) as info:
        await http.get_json(timeline(masto_a))
    assert info.value.retryable
    assert "truncated or invalid JSON" in str(info.value)


async def test_client_error_is_not_retried(http: HttpClient, masto_a: MastodonFake) -> None:
    with pytest.raises(HttpStatusError) as info:
        await http.get_json(timeline(masto_a, "nosuchtag"))
    assert info.value.status == 404 and not info.value.retryable
    assert info.value.error == "Record not found"
    assert len(masto_a.api_requests()) == 1


async def test_mastodon_429_waits_for_the_iso_reset_time(
    http: HttpClient, masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    masto_a.faults.rate_limit_next(1, seconds=0.6)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "monitor.sources"):
        data, _ = await http.get_json(timeline(masto_a))
    elapsed = time.monotonic() - started
    assert data
    # Mastodon sends no Retry-After; X-RateLimit-Reset is an ISO time ~0.6 s ahead
    assert elapsed >= 0.4
    assert any("HTTP 429" in r.getMessage() and "retrying in" in r.getMessage()
               for r in caplog.records)


async def test_bluesky_429_honours_retry_after(http: HttpClient, bsky: BlueskyFake) -> None:
    bsky.faults.rate_limit_next(1, seconds=0.5)
    started = time.monotonic()
    data, _ = await http.get_json(f"{bsky.url}/xrpc/app.bsky.feed.searchPosts",
                                  params={"q": "#metoo"})
    assert time.monotonic() - started >= 0.45
    assert data["posts"]
    assert len(bsky.api_requests()) == 2


async def test_long_429_skips_the_tick_and_holds_back_the_whole_host(
    masto_a: MastodonFake,
) -> None:
    settings = FAST.model_copy(update={"backoff_max": timedelta(seconds=1)})
    masto_a.faults.rate_limit_next(1, seconds=30)
    async with HttpClient(settings) as http:
        with pytest.raises(RateLimited) as info:
            await http.get_json(timeline(masto_a, "metoo"))
        assert 25 < info.value.retry_after <= 31
        # another stream on the same host does not even send a request
        with pytest.raises(RateLimited):
            await http.get_json(timeline(masto_a, "notallmen"))
    assert len(masto_a.api_requests()) == 1


async def test_slows_down_before_the_limit_and_never_hits_429(
    masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    # 8 requests per 1.5 s window; 12 requests must be spread so none is refused
    masto_a.set_rate_limit(8, 1.5)
    settings = FAST.model_copy(update={"max_retries": 0, "backoff_max": timedelta(seconds=3)})
    started = time.monotonic()
    async with HttpClient(settings) as http:
        with caplog.at_level(logging.INFO, "monitor.sources"):
            for _ in range(12):
                await http.get_json(timeline(masto_a))  # a 429 would raise (no retries)
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0, "requests were not spaced out as the window ran low"
    assert any("slowing down" in r.getMessage() for r in caplog.records)
    assert not any("429" in r.getMessage() for r in caplog.records)


async def test_per_host_budget_limits_concurrency_and_spacing(masto_a: MastodonFake,
                                                              masto_b: MastodonFake) -> None:
    settings = FAST.model_copy(update={"per_host_concurrency": 1,
                                       "per_host_min_interval": timedelta(milliseconds=100)})
    async with HttpClient(settings) as http:
        started = time.monotonic()
        await asyncio.gather(*(http.get_json(timeline(masto_a, t))
                               for t in ("metoo", "notallmen", "ididit", "howiwillchange")),
                             http.get_json(timeline(masto_b)))
        elapsed = time.monotonic() - started
    starts = sorted(r.at for r in masto_a.api_requests())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.08, gaps
    assert elapsed >= 0.3
    # the other host was not held back by the first one's budget
    assert masto_b.api_requests()[0].at - started < 0.1


async def test_refused_connection_is_one_clear_line_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    settings = FAST.model_copy(update={"max_retries": 2})
    async with HttpClient(settings) as http:
        with caplog.at_level(logging.DEBUG, "monitor.sources"), \
                pytest.raises(SourceError) as info:
            await http.get_json(f"http://127.0.0.1:{port}/api/v1/timelines/tag/metoo",
                                stream="#metoo")
    assert info.value.retryable
    # each retry is detail (DEBUG): the final failure is the stream's one line per poll
    lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(lines) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines[0].startswith(f"127.0.0.1:{port} #metoo: cannot connect (connection refused); "
                               "retrying in ")
    assert lines[0].endswith("— is the server running and the URL right?")
    assert str(info.value) == (f"127.0.0.1:{port} #metoo: cannot connect (connection refused; "
                               "is the server running and the URL right?) after 3 attempts")


async def test_unresolvable_host_says_to_check_the_network(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = FAST.model_copy(update={"max_retries": 1})
    async with HttpClient(settings) as http:
        with caplog.at_level(logging.DEBUG, "monitor.sources.transport"), \
                pytest.raises(SourceError):
            await http.get_json("https://mastodon.invalid/api/v1/timelines/tag/metoo",
                                stream="#metoo")
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 1 and retries[0].levelno == logging.DEBUG
    first = retries[0].getMessage()
    assert first.startswith("mastodon.invalid #metoo: cannot connect (name resolution failed); "
                            "retrying in ")
    assert first.endswith("— is this machine online?")


def test_backoff_is_exponential_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(3))
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        delay = backoff.next_delay()
        assert ceilings[-1] / 2 <= delay <= ceilings[-1]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.ceiling() == 0.5
    # jitter spreads retries of many streams that failed together
    delays = [Backoff(1, 8, rng=random.Random(i)).next_delay() for i in range(50)]
    assert max(delays) - min(delays) > 0.3


def test_format_wait_reads_like_a_person_wrote_it() -> None:
    assert format_wait(0.42) == "0.4s"
    assert format_wait(37.2) == "37s"
    assert format_wait(250) == "4m10s"
    assert format_wait(7200) == "2h00m"
