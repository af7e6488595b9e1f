"""Prometheus metrics of the service.

Most figures already live in the database (``stream_health`` counts posts and
errors per stream, ``outbox`` and ``alerts`` hold delivery and alert state), so
they are read on each scrape by :class:`StoreCollector` rather than kept twice
in memory: they survive restarts and agree across several service processes.
The one in-process figure is the write latency, observed around each stored
batch with :func:`observe_write`.

Metric names (all prefixed ``monitor_``):

- ``posts_collected_total{source,stream}``, ``posts_rejected_total{source,stream}``,
  ``fetch_errors_total{source,stream}`` — counters from stream_health
- ``collector_lag_seconds{source,stream}`` — newest post seen vs collection time
- ``collector_last_success_timestamp_seconds{source,stream}``
- ``outbox_depth`` — notifications not yet delivered
- ``alerts_firing{rule}`` — alerts currently firing
- ``bucket_write_seconds`` — histogram of batch write latency (posts+tags+buckets)

PostgreSQL only, from ``cluster_members`` (several ``monitor run`` on one database):

- ``cluster_members`` — member rows (a dead process's row stays up to 10 leases)
- ``cluster_member_renewed_seconds{member}`` — seconds since each member renewed
  (a live one renews every lease/3)
- ``cluster_hosts_held{member}`` — polled hosts each member polled within the last lease
- ``cluster_role_renewed_seconds{role,member}`` — per role (``stream:jetstream`` is the
  Jetstream leader, ``evaluator``, ``dispatcher``) the holder's renewal age; a role with
  no holder renewed within a lease has no live holder
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.store.alerts import firing_counts
from monitor.store.cluster import read_members
from monitor.store.health import read_status
from monitor.store.outbox import outbox_depth

__all__ = ["BUCKET_WRITE_SECONDS", "StoreCollector", "build_registry", "observe_write"]

log = logging.getLogger(__name__)

# not registered globally: each registry built by build_registry() includes it
BUCKET_WRITE_SECONDS = Histogram(
    "monitor_bucket_write_seconds",
    "Seconds to store one batch (posts, tags and bucket increments) in one transaction",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)


@contextmanager
def observe_write() -> Iterator[None]:
    """Time a batch write: ``with observe_write(): write_batch(...)``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        BUCKET_WRITE_SECONDS.observe(time.perf_counter() - start)


class StoreCollector(Collector):
    """Reads health, outbox and alert figures from the database on each scrape."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        labels = ["source", "stream"]
        collected = CounterMetricFamily("monitor_posts_collected", "Posts stored per stream",
                                        labels=labels)
        rejected = CounterMetricFamily("monitor_posts_rejected",
                                       "Malformed posts skipped per stream", labels=labels)
        errors = CounterMetricFamily("monitor_fetch_errors", "Failed fetches per stream",
                                     labels=labels)
        lag = GaugeMetricFamily("monitor_collector_lag_seconds",
                                "Seconds between the newest post seen and its collection",
                                labels=labels)
        success = GaugeMetricFamily("monitor_collector_last_success_timestamp_seconds",
                                    "Unix time of the last successful fetch", labels=labels)
        depth = GaugeMetricFamily("monitor_outbox_depth", "Notifications not yet delivered")
        firing = GaugeMetricFamily("monitor_alerts_firing", "Alerts currently firing",
                                   labels=["rule"])
        up = GaugeMetricFamily("monitor_store_up", "1 if the database answered this scrape")
        try:
            with self._engine.connect() as conn:  # one connection per scrape
                for row in read_status(conn):
                    key = [row.source, row.stream]
                    collected.add_metric(key, float(row.posts_collected))
                    rejected.add_metric(key, float(row.posts_rejected))
                    errors.add_metric(key, float(row.fetch_errors))
                    if row.lag_seconds is not None:
                        lag.add_metric(key, float(row.lag_seconds))
                    if row.last_success_at is not None:
                        success.add_metric(key, row.last_success_at.timestamp())
                depth.add_metric([], float(outbox_depth(conn)))
                for rule, n in firing_counts(conn).items():
                    firing.add_metric([rule], float(n))
            cluster = list(_cluster(self._engine))
            up.add_metric([], 1.0)
        except SQLAlchemyError as exc:
            # a scrape must not fail: report the store as down and nothing else
            log.warning("metrics: database unavailable: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        yield from (collected, rejected, errors, lag, success, depth, firing, up, *cluster)


def _cluster(engine: Engine) -> Iterator[Metric]:
    """Who is in the cluster and what each holds (none on SQLite: one process)."""
    if engine.dialect.name != "postgresql":
        return
    try:
        rows = read_members(engine)
    except SQLAlchemyError as exc:  # e.g. a schema before migration 0011: no cluster figures
        log.warning("metrics: cluster members unavailable: %s", type(exc).__name__)
        return
    count = GaugeMetricFamily("monitor_cluster_members", "Rows in cluster_members")
    count.add_metric([], float(len(rows)))
    renewed = GaugeMetricFamily("monitor_cluster_member_renewed_seconds",
                                "Seconds since the member last renewed", labels=["member"])
    hosts = GaugeMetricFamily("monitor_cluster_hosts_held",
                              "Polled hosts the member polled within the last lease",
                              labels=["member"])
    roles = GaugeMetricFamily("monitor_cluster_role_renewed_seconds",
                              "Seconds since the holder of the role last renewed",
                              labels=["role", "member"])
    for row in rows:
        renewed.add_metric([row.member], row.age)
        hosts.add_metric([row.member], float(len(row.hosts)))
        for role in row.roles:
            roles.add_metric([role, row.member], row.age)
    yield from (count, renewed, hosts, roles)


def build_registry(engine: Engine) -> CollectorRegistry:
    """A registry with the store-backed figures of *engine* and the write histogram."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine))
    registry.register(BUCKET_WRITE_SECONDS)
    return registry
