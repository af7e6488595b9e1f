"""Rate-limit headers, per platform: the same reset header means different things."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest

from monitor.errors import RateLimited
from monitor.sources.ratelimit import (
    IETF,
    MASTODON,
    REDDIT,
    HostBudgets,
    Window,
    X,
    read_window,
    reset_seconds,
    wait_after_429,
)
from tests.sources.conftest import FAST

NOW = 1_764_000_000.0  # a fixed wall clock (2025-11-24)
# NOW + 300 s as Mastodon writes it
ISO_IN_5M = datetime.fromtimestamp(NOW + 300, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({k.replace("_", "-"): v for k, v in values.items()})


@pytest.mark.parametrize(("raw", "kind", "want"), [
    (ISO_IN_5M, "iso", 300.0),                       # Mastodon
    ("300", "seconds", 300.0),                       # Reddit: seconds left
    ("598.0", "seconds", 598.0),
    (str(int(NOW) + 900), "epoch", 900.0),           # X: epoch seconds
    (str(int(NOW) + 60), "auto", 60.0),              # Bluesky: epoch
    ("60", "auto", 60.0),                            # IETF draft: seconds left
    (ISO_IN_5M, "auto", 300.0),
    ("soon", "seconds", None),
    ("300", "iso", None),
    ("nan", "auto", None),
    (str(int(NOW) - 10), "epoch", 0.0),              # a reset in the past: no wait
])
def test_reset_is_read_per_kind(raw: str, kind: str, want: float | None) -> None:
    got = reset_seconds(raw, kind, NOW)  # type: ignore[arg-type]
    assert got == (None if want is None else pytest.approx(want, abs=1.0))


def test_reddit_reset_is_seconds_left_and_limit_is_used_plus_remaining() -> None:
    h = headers(x_ratelimit_used="40", x_ratelimit_remaining="560.0", x_ratelimit_reset="420")
    assert read_window(h, REDDIT, NOW) == Window(560, 600, 420.0)
    # detected the same way when no scheme was declared for the host
    assert read_window(h, None, NOW) == Window(560, 600, 420.0)


def test_x_reset_is_an_epoch_under_hyphenated_names() -> None:
    h = headers(x_rate_limit_limit="450", x_rate_limit_remaining="3",
                x_rate_limit_reset=str(int(NOW) + 600))
    assert read_window(h, X, NOW) == Window(3, 450, 600.0)
    assert read_window(h, None, NOW) == Window(3, 450, 600.0)
    # the Mastodon/Reddit family is absent, so the X one is used
    assert read_window(h, MASTODON, NOW) is None


def test_mastodon_iso_reset_and_bluesky_epoch_still_read() -> None:
    iso = headers(x_ratelimit_limit="300", x_ratelimit_remaining="299",
                  x_ratelimit_reset=ISO_IN_5M)
    assert read_window(iso, MASTODON, NOW) == Window(299, 300, 300.0)
    assert read_window(iso, None, NOW) == Window(299, 300, 300.0)
    bsky = headers(ratelimit_limit="3000", ratelimit_remaining="10",
                   ratelimit_reset=str(int(NOW) + 120))
    assert read_window(bsky, IETF, NOW) == Window(10, 3000, 120.0)


def test_a_declared_scheme_wins_over_detection() -> None:
    # a seconds-left reset read as an epoch would be "already past": no wait at all
    h = headers(x_ratelimit_used="600", x_ratelimit_remaining="0", x_ratelimit_reset="420")
    assert read_window(h, REDDIT, NOW) == Window(0, 600, 420.0)
    as_iso = read_window(h, MASTODON, NOW)
    assert as_iso is None  # "420" is no ISO time: Mastodon's reading refuses it


def test_429_wait_from_reddit_and_x_headers() -> None:
    reddit = headers(x_ratelimit_used="600", x_ratelimit_remaining="0", x_ratelimit_reset="37")
    assert wait_after_429(reddit, REDDIT) == pytest.approx(37.0)
    x = headers(x_rate_limit_remaining="0", x_rate_limit_reset=str(int(time.time()) + 90))
    wait = wait_after_429(x, X)
    assert wait is not None and 85 <= wait <= 91
    # Retry-After, when present, is what the server asked for
    assert wait_after_429(headers(retry_after="5", x_rate_limit_reset="0"), X) == 5.0


def test_declared_host_blocks_until_the_seconds_left_reset() -> None:
    budgets = HostBudgets(FAST)
    budgets.declare("https://oauth.reddit.com/search", REDDIT)
    budget = budgets.of("oauth.reddit.com")
    assert budget.scheme is REDDIT
    window = budget.observe(headers(x_ratelimit_used="600", x_ratelimit_remaining="0",
                                    x_ratelimit_reset="30"))
    assert window == Window(0, 600, 30.0)
    # exhausted: the host is blocked for the 30 s left, so a reserve refuses at once
    with pytest.raises(RateLimited, match="rate-limit window exhausted") as info:
        asyncio.run(budget.reserve(max_wait=1.0))
    assert 28 <= info.value.retry_after <= 30
