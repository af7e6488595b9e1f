"""Issue 14, the core: processes on one PostgreSQL share polled hosts (one process per
host at a time), one leads Jetstream, and a `kill -9` hands both over within the lease.

Short forms for `make test`; the three-process end-to-end run with many kills is
tests/cluster/test_multiprocess.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select, text

from monitor.config import Config
from monitor.errors import ConfigError
from monitor.locks import RoleLock
from monitor.service import Service
from monitor.store.cluster import (
    HostState,
    claim_host,
    ensure_hosts,
    read_hosts,
    read_members,
    release_host,
    renew_hosts,
)
from monitor.store.db import make_engine, migrate
from monitor.store.schema import cluster_metadata, posts
from tests.conftest import pg_schema_url
from tests.fakes.data import TAGS, World
from tests.fakes.jetstream import JetstreamFake
from tests.fakes.mastodon_many import ManyMastodon

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent.parent
LEASE = 2.0
HTTP = {"timeout": "3s", "max_retries": 1, "backoff_base": "0.05s", "backoff_max": "0.3s",
        "per_host_min_interval": "0.01s", "per_host_concurrency": 1}


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_schema_url()


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def instances() -> Iterator[ManyMastodon]:
    fake = ManyMastodon(5, posts=40, latency=0.03)
    yield fake
    fake.stop()


@pytest.fixture
def jetstream() -> Iterator[JetstreamFake]:
    fake = JetstreamFake()
    yield fake
    fake.stop()


def config_data(url: str, masto: ManyMastodon, jet: JetstreamFake, contact: str
                ) -> dict[str, Any]:
    return {
        "database": {"url": url}, "hashtags": list(TAGS),
        "privacy": {"hash_secret": "c" * 32}, "web": {"enabled": False},
        "http": {**HTTP, "contact": contact},
        "cluster": {"lease": f"{LEASE}s", "concurrency": 2},
        "sources": [
            {"type": "mastodon", "instances": masto.urls, "interval": "0.3s", "jitter": "0s"},
            {"type": "jetstream", "hosts": [jet.url], "rewind": "1s",
             "batch_interval": "0.1s"},
        ],
    }


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool],
                timeout: float, what: str) -> float:
    started = time.monotonic()
    while True:
        # a database read off the event loop: an in-process service runs on it
        result = await asyncio.to_thread(check)
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def leaders(engine: Engine) -> list[str]:
    """The live members that say they lead Jetstream (a killed one's row is stale)."""
    return [m.member for m in read_members(engine)
            if "stream:jetstream" in m.roles and m.age <= LEASE]


# ---------------------------------------------------------------- the schema and the SQL


def test_cluster_tables_match_their_models(pg: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with pg.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": False,
            "include_name": lambda name, type_, _p: type_ != "table"
            or (name or "").startswith("cluster_")})
        assert compare_metadata(context, cluster_metadata) == []


def test_a_host_round_is_claimed_once_and_its_budget_state_carries_over(pg: Engine) -> None:
    ensure_hosts(pg, ["h1:443", "h2:443"])
    first = claim_host(pg, "h1:443", "a", every=60, slack=0.1, busy=60)
    assert isinstance(first, HostState)
    assert first.blocked_for is None and first.next_slot_in is None
    # another process, the same round: not due again for a minute
    assert claim_host(pg, "h1:443", "b", every=60, slack=0.1, busy=60) is None
    hosts = cluster_metadata.tables["cluster_hosts"]
    with pg.begin() as conn:  # due again, but the round in progress is still held by "a"
        conn.execute(hosts.update().values(next_due=func.now()))
    wait = claim_host(pg, "h1:443", "b", every=60, slack=0.1, busy=60)
    assert isinstance(wait, float) and 58 < wait <= 60  # the seconds "a"'s hold has left
    # "a" renews its hold; a renewal by another process renews nothing
    assert renew_hosts(pg, "b", ["h1:443"], 90) == set()
    assert renew_hosts(pg, "a", ["h1:443", "h2:443"], 90) == {"h1:443"}
    wait = claim_host(pg, "h1:443", "b", every=60, slack=0.1, busy=60)
    assert isinstance(wait, float) and 88 < wait <= 90
    release_host(pg, "h1:443", "b", blocked_for=1.0, next_slot_in=None)  # not b's round
    assert isinstance(claim_host(pg, "h1:443", "b", every=60, slack=0.1, busy=60), float)
    release_host(pg, "h1:443", "a", blocked_for=30.0, next_slot_in=0.5)
    # released and due: whoever claims it gets the rate-limit state the last round left
    later = claim_host(pg, "h1:443", "b", every=60, slack=0.1, busy=60)
    assert isinstance(later, HostState) and later.blocked_for is not None
    assert 28 < later.blocked_for <= 30 and later.next_slot_in is not None
    assert [(h.host, h.holder, h.polls) for h in read_hosts(pg)] == [
        ("h1:443", "b", 2), ("h2:443", None, 0)]
    # a hold that ran out (its holder died) is free to claim at once
    with pg.begin() as conn:
        conn.execute(hosts.update().values(next_due=func.now(),
                                           busy_until=func.now() - text("interval '1s'")))
    assert isinstance(claim_host(pg, "h1:443", "c", every=60, slack=0.1, busy=60), HostState)


def test_lease_settings_are_checked_in_one_line(tmp_path: Path) -> None:
    from monitor.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"lease": "0.2s"}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(str(err.value).splitlines()) == 1
    assert "cluster.lease" in str(err.value) and "between 1s and 10m" in str(err.value)
    assert Config(cluster={"lease": "3s", "concurrency": 2}).cluster.lease_seconds == 3.0
    assert Config().cluster.lease_seconds == 10.0  # no section needed


# ---------------------------------------------------------------- two services, one database


async def test_two_services_share_the_hosts_one_at_a_time_and_one_leads_jetstream(
        pg: Engine, pg_url: str, instances: ManyMastodon, jetstream: JetstreamFake) -> None:
    configs = [Config(**config_data(pg_url, instances, jetstream, f"p{n}@example.org"))
               for n in range(2)]
    engines = [make_engine(pg_url) for _ in configs]
    services = [Service(c, e) for c, e in zip(configs, engines, strict=True)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in services]
    try:
        await until(lambda: len(read_members(pg)) == 2, 20, "two members")
        since = time.monotonic()
        # both processes poll, each host by one of them at a time
        await until(lambda: len(instances.clients(since)) == 2 and len(
            instances.times_by_host(since)) == 5, 20, "both processes polling every host")
        since = time.monotonic()
        await asyncio.sleep(2.0)
        assert len(leaders(pg)) == 1
        assert sum(1 for s in services if any(
            t.get_name() == "stream:jetstream" for t in s._tasks)) == 1
        # per_host_concurrency 1: two requests in flight on one host would mean two
        # processes polled it at once
        assert max(instances.peak_host_inflight.values()) == 1
        # the round is cluster-wide: interval 0.3s, not 0.3s per process
        elapsed = time.monotonic() - since
        for host, times in instances.times_by_host(since).items():
            rounds = len(times) / len(TAGS)  # one request per tag and round
            assert rounds <= elapsed / 0.3 + 2, (host, rounds, elapsed)
        rows = {m.member: m for m in read_members(pg)}
        assert {len(m.hosts) > 0 for m in rows.values()} == {True}
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for engine in engines:
            engine.dispose()
    assert read_members(pg) == []  # a clean stop leaves the cluster


# ---------------------------------------------------------------- kill -9


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config",
                                 str(config)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "MONITOR_HTTP_CONTACT": "victim@example.org"})


@pytest.mark.timeout(240)  # one `monitor run` child: its start-up is most of the time
async def test_kill_9_hands_the_hosts_and_the_jetstream_lead_over_within_the_lease(
        pg: Engine, pg_url: str, instances: ManyMastodon, jetstream: JetstreamFake,
        tmp_path: Path) -> None:
    world = World(seed=14, mastodon_posts=0, bluesky_posts=24)
    data = config_data(pg_url, instances, jetstream, "survivor@example.org")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    # the victim first: it takes the Jetstream lead and the scheduler role
    victim = _spawn(path, tmp_path / "victim.log")
    survivor: Service | None = None
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    engine = make_engine(pg_url)
    try:
        await until(lambda: len(leaders(pg)) == 1 or victim.poll() is not None, 60,
                    "the victim to lead")
        assert victim.poll() is None, (tmp_path / "victim.log").read_text()[-2000:]
        survivor = Service(Config(**data), engine)
        task = asyncio.create_task(survivor.run(stop))
        await until(lambda: len(read_members(pg)) == 2, 20, "the survivor to join")
        bluesky = world.bluesky_posts()
        await asyncio.to_thread(jetstream.publish_posts, bluesky[:12])
        count = select(func.count()).select_from(posts).where(posts.c.platform == "bluesky")

        def stored(n: int) -> Callable[[], bool]:
            def check() -> bool:
                with pg.connect() as conn:
                    return conn.execute(count).scalar() == n
            return check

        await until(stored(12), 20, "the leader to store the first posts")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        killed = time.monotonic()
        me = survivor.cluster.membership.member if survivor.cluster else ""
        took_lead = await until(lambda: leaders(pg) == [me], 4 * LEASE + 2,
                                "the survivor to lead Jetstream")
        # every host is polled by the survivor alone from now on
        since = time.monotonic()
        await until(lambda: {h.holder for h in read_hosts(pg)
                             if h.polled_at is not None} == {me} and len(
            instances.times_by_host(since)) == 5, 4 * LEASE + 3,
            "the survivor to poll every host")
        took_hosts = time.monotonic() - killed
        # the new leader resumes from the stored cursor: the rest arrives, nothing twice
        await asyncio.to_thread(jetstream.publish_posts, bluesky[12:])
        await until(stored(24), 20, "the new leader to store the rest")
        await asyncio.sleep(1.0)
        assert stored(24)()
        # the bound: within two lease periods of the kill (a lease after the
        # victim's last renewal, in practice)
        print(f"kill -9: Jetstream lead taken in {took_lead:.2f}s, every host polled by the "
              f"survivor in {took_hosts:.2f}s (lease {LEASE:g}s)")
        assert took_lead <= 2 * LEASE, took_lead
        assert took_hosts <= 2 * LEASE, took_hosts
        assert max(instances.peak_host_inflight.values()) == 1
        # `monitor status --cluster` lists the members: the survivor renews, the victim
        # is silent until it is forgotten
        done = await asyncio.to_thread(  # (the survivor renews on this event loop)
            subprocess.run, [sys.executable, "-m", "monitor", "status", "--cluster",
                             "--format", "json", "--config", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        shown = {row["member"]: row for row in json.loads(done.stdout)}
        assert shown[me]["alive"] is True and "stream:jetstream" in shown[me]["roles"]
        assert shown[me]["pid"] == os.getpid()
        # the victim: silent, or already forgotten (after ten leases)
        assert [(row["pid"], row["alive"]) for m, row in shown.items() if m != me] in (
            [(victim.pid, False)], [])
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        stop.set()
        if task is not None:
            await task
        engine.dispose()


def test_sqlite_has_no_cluster(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    migrate(engine)
    from monitor.cluster.status import cluster_rows

    assert cluster_rows(engine, Config().cluster, "table") == []
    assert RoleLock.held_roles(engine) == []
    engine.dispose()


async def test_tags_changed_at_run_time_reach_the_host_jobs(
        pg: Engine, pg_url: str, instances: ManyMastodon, jetstream: JetstreamFake) -> None:
    from datetime import UTC, datetime

    from monitor.store.followed import set_followed

    data = config_data(pg_url, instances, jetstream, "tags@example.org")
    data["hashtags"] = ["metoo"]
    data["sources"] = data["sources"][:1]  # polled only
    service = Service(Config(**data), make_engine(pg_url))
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await until(lambda: {h.tag for h in instances.hits()} == {"metoo"}
                    and len(instances.times_by_host()) == 5, 20, "the first rounds")
        set_followed(pg, "ididit", True, datetime.now(UTC))
        set_followed(pg, "metoo", False, datetime.now(UTC))
        changed = time.monotonic()
        await until(lambda: {h.port for h in instances.hits(changed) if h.tag == "ididit"}
                    == {i.port for i in instances.instances}, 20, "#ididit on every host")
        await asyncio.sleep(1.0)
        later = time.monotonic()
        await asyncio.sleep(1.0)
        assert {h.tag for h in instances.hits(later)} == {"ididit"}  # #metoo polled no more
    finally:
        stop.set()
        await task
        service.engine.dispose()
