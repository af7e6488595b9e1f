"""The SQL of the cluster (PostgreSQL only; tables from migration 0011_cluster).

``cluster_members``: one row per live ``monitor run``, renewed every lease/3.
``cluster_hosts``: per polled platform host, who polled it last, when it is due
next, until when its round in progress is held (``busy_until``: a lease on the
host, renewed every lease/3 by its holder) and the rate-limit state the last poll
left (so the next process that polls the host starts where the last one stopped).
Every time here is the database server's clock, so processes on machines whose
clocks differ still agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

__all__ = [
    "HostRow",
    "HostState",
    "MemberRow",
    "claim_host",
    "drop_member",
    "due_hosts",
    "ensure_hosts",
    "read_hosts",
    "read_members",
    "release_host",
    "renew_hosts",
    "renew_member",
]


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One process of the cluster, as ``monitor status`` shows it."""

    member: str
    hostname: str
    pid: int
    started_at: datetime
    renewed_at: datetime
    roles: tuple[str, ...]
    hosts: tuple[str, ...]
    worker_id: int | None
    age: float  # seconds since renewed_at, by the database's clock


@dataclass(frozen=True, slots=True)
class HostRow:
    host: str
    holder: str | None
    polled_at: datetime | None
    next_due: datetime
    polls: int


@dataclass(frozen=True, slots=True)
class HostState:
    """What a claimed host's last poll left: seconds from now (None: nothing pending)."""

    blocked_for: float | None
    next_slot_in: float | None


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part for part in (value or "").split(",") if part)


def renew_member(engine: Engine, member: str, hostname: str, pid: int, started_at: datetime,
                 roles: Iterable[str], hosts: Iterable[str], worker_id: int | None) -> None:
    """Insert or renew this process's row (renewed_at = the server's now)."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO cluster_members (member, hostname, pid, started_at, renewed_at, roles,"
            " hosts, worker_id) VALUES (:m, :h, :p, :s, now(), :r, :hs, :w)"
            " ON CONFLICT (member) DO UPDATE SET renewed_at = now(), roles = EXCLUDED.roles,"
            " hosts = EXCLUDED.hosts, worker_id = EXCLUDED.worker_id"),
            {"m": member, "h": hostname, "p": pid, "s": started_at, "r": ",".join(roles),
             "hs": ",".join(hosts), "w": worker_id})


def drop_member(engine: Engine, member: str | None = None, *, silent_for: float | None = None
                ) -> int:
    """Delete *member*'s row (a clean stop), or every row not renewed for *silent_for* s."""
    with engine.begin() as conn:
        if member is not None:
            return conn.execute(text("DELETE FROM cluster_members WHERE member = :m"),
                                {"m": member}).rowcount
        return conn.execute(text(
            "DELETE FROM cluster_members WHERE renewed_at < now() - make_interval(secs => :s)"),
            {"s": silent_for or 0.0}).rowcount


def read_members(engine: Engine) -> list[MemberRow]:
    """Every member row, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT member, hostname, pid, started_at, renewed_at, roles, hosts, worker_id,"
            " EXTRACT(EPOCH FROM now() - renewed_at) FROM cluster_members"
            " ORDER BY started_at, member")).all()
    return [MemberRow(r[0], r[1], r[2], r[3], r[4], _split(r[5]), _split(r[6]), r[7],
                      float(r[8])) for r in rows]


def ensure_hosts(engine: Engine, hosts: Sequence[str]) -> None:
    """A row for each host (due now); existing rows keep their state."""
    if not hosts:
        return
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO cluster_hosts (host, next_due, polls) VALUES (:h, now(), 0)"
            " ON CONFLICT (host) DO NOTHING"), [{"h": h} for h in hosts])


def due_hosts(engine: Engine) -> set[str]:
    """The hosts whose next poll is due now and whose job is not waiting already.

    "Waiting" is read from the job engine's own table: a ``todo`` job whose queueing
    lock is the host (procrastinate's unique partial index on ``queueing_lock``
    answers it), so a saturated cluster is not asked to queue it again every tick.
    """
    with engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT h.host FROM cluster_hosts h WHERE h.next_due <= now()"
            " AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j"
            "  WHERE j.queueing_lock = h.host AND j.status = 'todo')")).scalars())


def claim_host(engine: Engine, host: str, member: str, every: float, slack: float,
               busy: float) -> HostState | float | None:
    """Take this round of *host* and hold it for *busy* s (renewed by :func:`renew_hosts`).

    Returns the rate-limit state the last poll left (seconds from now); ``None`` when
    the host is not due (within *slack* s) yet; a float, the seconds until it may be
    claimed, when it is due but another round of it is held (its holder's lease on it
    runs out then, unless renewed). Sets the next round *every* s from now.
    """
    with engine.begin() as conn:
        row = conn.execute(text(
            "UPDATE cluster_hosts SET holder = :m, polled_at = now(), polls = polls + 1,"
            " next_due = now() + make_interval(secs => :e),"
            " busy_until = now() + make_interval(secs => :b)"
            " WHERE host = :h AND next_due <= now() + make_interval(secs => :s)"
            " AND (busy_until IS NULL OR busy_until <= now())"
            " RETURNING EXTRACT(EPOCH FROM blocked_until - now()),"
            " EXTRACT(EPOCH FROM next_slot - now())"),
            {"h": host, "m": member, "e": every, "s": slack, "b": busy}).first()
        if row is None:
            held = conn.execute(text(
                "SELECT EXTRACT(EPOCH FROM busy_until - now()) FROM cluster_hosts"
                " WHERE host = :h AND next_due <= now() + make_interval(secs => :s)"
                " AND busy_until > now()"), {"h": host, "s": slack}).scalar()
            return None if held is None else max(0.0, float(held))
    blocked, slot = (None if v is None or float(v) <= 0 else float(v) for v in row)
    return HostState(blocked, slot)


def renew_hosts(engine: Engine, member: str, hosts: Sequence[str], busy: float) -> set[str]:
    """Hold *member*'s rounds of *hosts* *busy* s more; the hosts still held come back
    (a host missing was taken over: the lease on it ran out before this renewal)."""
    if not hosts:
        return set()
    with engine.begin() as conn:
        return set(conn.execute(text(
            "UPDATE cluster_hosts SET busy_until = now() + make_interval(secs => :b)"
            " WHERE host = ANY(:hs) AND holder = :m AND busy_until > now()"
            " RETURNING host"), {"hs": list(hosts), "m": member, "b": busy}).scalars())


def release_host(engine: Engine, host: str, member: str, blocked_for: float | None,
                 next_slot_in: float | None) -> None:
    """End *member*'s round of *host*; leave its rate-limit state (seconds from now;
    None: nothing pending). A round taken over meanwhile is not *member*'s to end."""
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE cluster_hosts SET busy_until = NULL,"
            " blocked_until = CASE WHEN CAST(:b AS float8) IS NULL THEN NULL"
            "   ELSE now() + make_interval(secs => CAST(:b AS float8)) END,"
            " next_slot = CASE WHEN CAST(:n AS float8) IS NULL THEN NULL"
            "   ELSE now() + make_interval(secs => CAST(:n AS float8)) END"
            " WHERE host = :h AND holder = :m"),
            {"h": host, "m": member, "b": blocked_for, "n": next_slot_in})


def read_hosts(engine: Engine) -> list[HostRow]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT host, holder, polled_at, next_due, polls FROM cluster_hosts"
            " ORDER BY host")).all()
    return [HostRow(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]
