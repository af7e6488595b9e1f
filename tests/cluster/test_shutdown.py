"""SIGTERM ends a clustered `monitor run` within seconds, every time (issue 14).

A process of the cluster once logged "stopped" and then never exited: its
procrastinate worker, left running by the service's stop (the service's grace
and the worker's graceful timeout were equal, so the service always gave up on
a busy worker first), was left to ``asyncio.run``'s unbounded final
cancellation. Now the stop ends the worker itself (rounds in hand cut short,
graceful timeout a third of the grace), and ``monitor run`` has an exit
watchdog as a last resort, which must never be what ends the process here.

Two processes share the hosts and the Jetstream lead, both polling busily
(a host job in hand at the signal, pages in flight), then both get SIGTERM at
once; three rounds, the signal at a different moment of the polling each time,
so a rare hang has more than one chance to show.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.store.db import make_engine
from tests.cluster.harness import Members, members_alive, pg_schema, wait_until, write_config
from tests.fakes.jetstream import JetstreamFake
from tests.fakes.mastodon_many import ManyMastodon

pytestmark = pytest.mark.postgres

LEASE = 1.0
EXIT_WITHIN = 4.0  # seconds from SIGTERM to exit (the service's grace is 5 s)


@pytest.fixture
def fakes() -> Iterator[tuple[ManyMastodon, JetstreamFake]]:
    # enough history that a poll is never over at once: backfill pages at 30 ms each
    masto = ManyMastodon(6, posts=300, latency=0.03)
    jet = JetstreamFake()
    yield masto, jet
    jet.stop()
    masto.stop()


@pytest.mark.timeout(150)
def test_sigterm_ends_busy_cluster_processes_within_seconds(
        tmp_path: Path, fakes: tuple[ManyMastodon, JetstreamFake]) -> None:
    masto, jet = fakes
    rng = random.Random(7)
    with pg_schema("st") as url:
        config = write_config(tmp_path / "config.yaml", url, [
            {"type": "mastodon", "instances": masto.urls, "interval": "0.3s", "jitter": "0s",
             "page_limit": 20, "backfill_pages": 50},
            {"type": "jetstream", "hosts": [jet.url], "rewind": "1s",
             "batch_interval": "0.1s"}], lease=f"{LEASE:g}s", concurrency=2)
        engine: Engine = make_engine(url)
        try:
            for round_ in range(3):
                folder = tmp_path / f"round{round_}"
                folder.mkdir()
                _start_poll_and_stop(Members(config, folder), engine, masto,
                                     rng.uniform(0.0, 1.5))
                # a clean stop leaves the cluster: no member row stays behind
                assert members_alive(engine, 60) == []
        finally:
            engine.dispose()


def _start_poll_and_stop(members: Members, engine: Engine, masto: ManyMastodon,
                         pause: float) -> None:
    try:
        for _ in range(2):
            members.add()
        wait_until(lambda: len(members_alive(engine, 5 * LEASE)) == 2,
                   "both processes joined", 60, members)
        since = time.monotonic()
        wait_until(lambda: len(masto.clients(since)) == 2, "both processes polling", 20,
                   members)
        time.sleep(pause)  # somewhere in a round
        signalled = time.monotonic()
        codes = members.stop_all(within=15)
        took = time.monotonic() - signalled
        print(f"SIGTERM to exit: {took:.2f}s")
        logs = members.logs(20_000)
        assert codes == {"m1": 0, "m2": 0}, (codes, logs[-3000:])
        assert took <= EXIT_WITHIN, (took, logs[-3000:])
        assert logs.count("stopped after") == 2, logs[-3000:]
        # the watchdog is the last resort, not the way out
        assert "after stopping: exiting now" not in logs, logs[-6000:]
        assert "did not finish within" not in logs, logs[-3000:]
        assert "Traceback" not in logs, logs[-6000:]
    finally:
        members.stop_all(within=5)
