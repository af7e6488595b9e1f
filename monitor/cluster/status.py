"""The cluster's rows in ``monitor status``: which process holds what, and since when.

Read from ``cluster_members`` (:mod:`monitor.cluster.members`). A member whose
row has not been renewed for a lease is shown as silent: it is stopped, killed
or cut off, and what it held (roles, hosts) is being taken over elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from monitor.cluster.settings import ClusterSettings
from monitor.store.cluster import read_members

__all__ = ["CLUSTER_COLUMNS", "cluster_rows"]

CLUSTER_COLUMNS = ("member", "hostname", "pid", "alive", "started", "renewed", "roles",
                   "hosts")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s ago"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m ago"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cluster_rows(engine: Engine, settings: ClusterSettings, fmt: str
                 ) -> list[dict[str, Any]]:
    """One row per member (none on SQLite: a single process, no cluster).

    *fmt* ``table``: ages and short lists; ``json``: ISO times and lists; ``csv``:
    ISO times, lists joined with spaces.
    """
    if engine.dialect.name != "postgresql":
        return []
    table = fmt == "table"
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for m in read_members(engine):
        alive = m.age <= settings.lease_seconds
        hosts: Any = list(m.hosts)
        roles: Any = list(m.roles)
        if table:
            shown = ", ".join(m.hosts[:3]) + (", …" if len(m.hosts) > 3 else "")
            hosts = f"{len(m.hosts)}: {shown}" if m.hosts else "0"
            roles = ", ".join(m.roles)
        elif fmt == "csv":
            hosts, roles = " ".join(m.hosts), " ".join(m.roles)
        out.append({
            "member": m.member,
            "hostname": m.hostname,
            "pid": m.pid,
            "alive": ("yes" if alive else "silent") if table else alive,
            "started": _ago((now - m.started_at).total_seconds()) if table
            else _iso(m.started_at),
            "renewed": _ago(m.age) if table else _iso(m.renewed_at),
            "roles": roles,
            "hosts": hosts,
        })
    return out
