"""The optional ``cluster:`` section: only lease times and the per-process job cap.

Nothing here is needed to run clustered: every ``monitor run`` on PostgreSQL is a
member of the cluster of its database (one process is a cluster of one).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.durations import Duration, format_duration

__all__ = ["ClusterSettings"]

_LEASE_MIN = timedelta(seconds=1)
_LEASE_MAX = timedelta(minutes=10)


class ClusterSettings(BaseModel):
    """``lease``: how long a dead process keeps what it held (leadership, a host's
    running poll job, its ``cluster_members`` row). Leadership is re-tried every
    ``lease/2``; each process renews its row, its worker's heartbeat and its hold on
    the hosts it polls every ``lease/3``; a job of a process without a heartbeat for
    ``lease`` is handed to another process, which polls the host once the hold runs
    out (so within two leases of a crash).
    ``concurrency``: host poll jobs one process runs at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lease: Duration = timedelta(seconds=10)
    concurrency: int = Field(default=8, ge=1, le=256)

    @field_validator("lease")
    @classmethod
    def _lease_range(cls, value: timedelta) -> timedelta:
        if not _LEASE_MIN <= value <= _LEASE_MAX:
            raise ValueError(f"expected a lease between {format_duration(_LEASE_MIN)} and "
                             f"{format_duration(_LEASE_MAX)}, got {format_duration(value)}")
        return value

    @property
    def lease_seconds(self) -> float:
        return self.lease.total_seconds()
