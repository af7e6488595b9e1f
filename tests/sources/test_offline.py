"""Offline, one line per stream per poll and one "this machine looks offline" line,
not a warning per retry (issue 15: 157 warnings in 36 s of `make run`)."""

from __future__ import annotations

import logging

import pytest

from monitor.errors import SourceError
from monitor.sources.http import HttpClient
from monitor.sources.offline import OfflineWatch
from tests.fakes.mastodon import MastodonFake
from tests.sources.conftest import FAST


async def test_unreachable_hosts_log_one_offline_line_not_every_retry(
    masto_a: MastodonFake, caplog: pytest.LogCaptureFixture
) -> None:
    # .invalid never resolves (RFC 2606), online or off
    hosts = ["a.invalid", "b.invalid", "c.invalid", "d.invalid"]
    async with HttpClient(FAST) as http:
        with caplog.at_level(logging.DEBUG, "monitor.sources"):
            for host in hosts:
                with pytest.raises(SourceError, match="name resolution failed"):
                    await http.get_json(f"http://{host}/api", stream="#metoo")
            warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            # every retry is still there for whoever wants DEBUG
            retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
            assert len(retries) == len(hosts) * FAST.max_retries
            assert all(r.levelno == logging.DEBUG for r in retries)
            assert warnings == ["this machine looks offline: name resolution failed for 3 hosts "
                                "(a.invalid, b.invalid, c.invalid); every stream keeps retrying "
                                "with backoff and logs one line per poll"]
            assert http.budgets.offline.offline
            caplog.clear()
            await http.get_json(f"{masto_a.url}/api/v1/timelines/tag/metoo")
    assert not http.budgets.offline.offline
    assert [r.getMessage().split(" answered")[0] for r in caplog.records
            if "network is back" in r.getMessage()] == [f"the network is back: {masto_a.host}"]


def test_offline_needs_several_hosts_and_no_answer_between() -> None:
    watch = OfflineWatch(hosts_to_say=3)
    dns = "cannot connect (name resolution failed)"
    assert not watch.failed("a", dns) and not watch.failed("a", dns)
    assert not watch.failed("b", dns)
    watch.answered("x")  # something answered: not offline, start over
    assert not watch.failed("c", dns) and not watch.failed("d", dns)
    assert not watch.failed("e", "HTTP 503")  # a server error is not being offline
    assert not watch.failed("e", dns)  # the third host: said once, this line still shown
    assert watch.offline and watch.failed("f", dns)  # from now on, quiet
