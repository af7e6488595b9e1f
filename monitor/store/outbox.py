"""The notification outbox: the one module that reads and writes ``outbox`` and ``deliveries``.

``outbox`` holds what is to be announced (written by the rule engine in the
same transaction as the alert change, or by the dispatcher for the digest);
``deliveries`` tracks each (outbox row, notifier) pair. The dispatcher
(``monitor.notify.outbox``) decides what to send; this module records it:

- ``next_attempt_at``: due time; NULL once delivered or given up. A give-up
  always says why in ``last_error`` (:func:`mark_failed`); a row with neither a
  delivery, a due time nor that is not given up: :func:`close_finished` makes it
  due again rather than closing its outbox row without a send.
- ``delivered_at``: when the notification carrying the row went out. Rows sent
  together share this timestamp, which is how the hourly cap counts messages.
- ``claim_key`` / ``claim_notice``: the notification carrying the row, written
  *before* it is sent (:func:`claim`) and kept through failures and after the
  delivery; ``claim_notice`` says that notification is a "suppressed" notice.
- ``last_error``: the last failure, for people (``monitor outbox``); never parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from monitor.store.reading import Reader, reading
from monitor.store.schema import deliveries, outbox
from monitor.store.write import insert_for

__all__ = [
    "Delivery",
    "OutboxEntry",
    "Unsent",
    "claim",
    "close_finished",
    "enqueue",
    "enqueue_once",
    "load_deliveries",
    "mark_delivered",
    "mark_failed",
    "outbox_depth",
    "route",
    "undelivered",
]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One ``outbox`` row."""

    id: int
    idempotency_key: str
    kind: str  # firing | resolved | repeat | digest
    payload: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (outbox row, notifier) pair with its delivery state."""

    entry: OutboxEntry
    notifier: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    claim_key: str | None
    claim_notice: bool
    last_error: str | None


def _entry(row: Any) -> OutboxEntry:
    payload = row.payload if isinstance(row.payload, dict) else {}
    return OutboxEntry(int(row.id), str(row.idempotency_key), str(row.kind), payload,
                       row.created_at)


# --------------------------------------------------------------------- outbox


def enqueue(
    conn: Connection, *, key: str, kind: str, payload: Mapping[str, Any], created_at: datetime,
    alert_id: int | None = None,
) -> None:
    """Add an outbox row in the caller's transaction; a key already there is left alone."""
    conn.execute(
        insert_for(conn, outbox).values(
            idempotency_key=key, kind=kind, alert_id=alert_id, payload=dict(payload),
            created_at=created_at,
        ).on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
    )


def enqueue_once(
    engine: Engine, *, key: str, kind: str, payload: Mapping[str, Any], created_at: datetime,
) -> None:
    """:func:`enqueue` in a transaction of its own."""
    with engine.begin() as conn:
        enqueue(conn, key=key, kind=kind, payload=payload, created_at=created_at)


def _open_entries(conn: Connection) -> list[OutboxEntry]:
    return [_entry(r) for r in conn.execute(select(outbox).where(outbox.c.done_at.is_(None)))]


def outbox_depth(db: Reader) -> int:
    """Notifications not yet delivered to every notifier (or given up)."""
    stmt = select(func.count()).select_from(outbox).where(outbox.c.done_at.is_(None))
    with reading(db) as conn:
        return int(conn.execute(stmt).scalar_one())


def route(engine: Engine, accepting: Callable[[OutboxEntry], Iterable[str]]) -> None:
    """Add a deliveries row for every (open outbox row, notifier named by *accepting*).

    A new row is due at once (``next_attempt_at`` = the outbox row's creation).
    """
    with engine.begin() as conn:
        entries = _open_entries(conn)
        if not entries:
            return
        have = {
            (r.outbox_id, r.notifier)
            for r in conn.execute(
                select(deliveries.c.outbox_id, deliveries.c.notifier).where(
                    deliveries.c.outbox_id.in_([e.id for e in entries])
                )
            )
        }
        new = [
            {"outbox_id": entry.id, "notifier": name, "attempts": 0,
             "next_attempt_at": entry.created_at}
            for entry in entries for name in accepting(entry)
            if (entry.id, name) not in have
        ]
        if new:
            conn.execute(
                insert_for(conn, deliveries).on_conflict_do_nothing(
                    index_elements=["outbox_id", "notifier"]
                ),
                new,
            )


@dataclass(frozen=True, slots=True)
class Unsent:
    """A delivery :func:`close_finished` found neither delivered nor waiting."""

    outbox_id: int
    notifier: str
    attempts: int
    last_error: str | None


def close_finished(engine: Engine, now: datetime,
                   accepting: Callable[[OutboxEntry], Iterable[str]]
                   ) -> tuple[list[Unsent], list[Unsent]]:
    """Close open outbox rows every notifier named by *accepting* delivered (or gave up on).

    Returns (given up: deliveries of the rows just closed that never went out;
    resumed: deliveries found with neither a delivery, a next attempt nor a
    recorded give-up, which are made due again at *now* instead of counting as
    given up). A give-up always records why in ``last_error`` (:func:`mark_failed`),
    so a row without one was not given up on purpose: it must not close silently.
    """
    with engine.begin() as conn:
        entries = _open_entries(conn)
        if not entries:
            return [], []
        rows = list(conn.execute(
            select(deliveries).where(deliveries.c.outbox_id.in_([e.id for e in entries]))))
        orphans = [d for d in rows if d.delivered_at is None and d.next_attempt_at is None
                   and not d.last_error]
        if orphans:
            conn.execute(update(deliveries).where(or_(*(
                and_(deliveries.c.outbox_id == d.outbox_id, deliveries.c.notifier == d.notifier)
                for d in orphans))).values(next_attempt_at=now))
        lost = {(d.outbox_id, d.notifier) for d in orphans}
        settled: dict[tuple[int, str], bool] = {
            (d.outbox_id, d.notifier): (d.delivered_at is not None or d.next_attempt_at is None)
            and (d.outbox_id, d.notifier) not in lost
            for d in rows
        }
        done = [e.id for e in entries
                if all(settled.get((e.id, name), False) for name in accepting(e))]
        if done:
            conn.execute(update(outbox).where(outbox.c.id.in_(done)).values(done_at=now))
    closed = set(done)
    given_up = [Unsent(int(d.outbox_id), str(d.notifier), int(d.attempts or 0), d.last_error)
                for d in rows if d.outbox_id in closed and d.delivered_at is None]
    resumed = [Unsent(int(d.outbox_id), str(d.notifier), int(d.attempts or 0), d.last_error)
               for d in orphans]
    return given_up, resumed


# ----------------------------------------------------------------- deliveries


_WITH_STATE = (
    select(outbox, deliveries.c.notifier, deliveries.c.attempts, deliveries.c.next_attempt_at,
           deliveries.c.delivered_at, deliveries.c.claim_key, deliveries.c.claim_notice,
           deliveries.c.last_error)
    .join(deliveries, deliveries.c.outbox_id == outbox.c.id)
)


def _delivery(r: Any) -> Delivery:
    return Delivery(_entry(r), str(r.notifier), int(r.attempts or 0), r.next_attempt_at,
                    r.delivered_at, r.claim_key, bool(r.claim_notice), r.last_error)


def load_deliveries(engine: Engine, notifier: str, now: datetime, window: timedelta
                    ) -> tuple[list[Delivery], list[Delivery]]:
    """*notifier*'s (rows waiting, oldest first; rows delivered within *window* of *now*)."""
    query = _WITH_STATE.where(deliveries.c.notifier == notifier)
    with engine.connect() as conn:
        pending = conn.execute(
            query.where(deliveries.c.delivered_at.is_(None),
                        deliveries.c.next_attempt_at.is_not(None))
            .order_by(outbox.c.created_at, outbox.c.id)
        ).all()
        recent = conn.execute(
            query.where(and_(deliveries.c.delivered_at.is_not(None),
                             deliveries.c.delivered_at > now - window))
        ).all()
    return [_delivery(r) for r in pending], [_delivery(r) for r in recent]


def undelivered(engine: Engine, limit: int = 200) -> list[Delivery]:
    """Every notifier's undelivered rows (waiting or given up), oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            _WITH_STATE.where(deliveries.c.delivered_at.is_(None))
            .order_by(outbox.c.created_at, outbox.c.id, deliveries.c.notifier)
            .limit(limit)
        ).all()
    return [_delivery(r) for r in rows]


def _members(notifier: str, outbox_ids: Collection[int]) -> Any:
    return and_(deliveries.c.notifier == notifier, deliveries.c.outbox_id.in_(list(outbox_ids)))


def claim(engine: Engine, notifier: str, outbox_ids: Collection[int], *, key: str,
          notice: bool) -> None:
    """Commit that notification *key* carries these rows, before it is sent; counts an attempt."""
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(_members(notifier, outbox_ids)).values(
            attempts=deliveries.c.attempts + 1, claim_key=key, claim_notice=notice,
        ))


def mark_delivered(engine: Engine, notifier: str, outbox_ids: Collection[int],
                   at: datetime) -> None:
    """The notification carrying these rows went out at *at*."""
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(_members(notifier, outbox_ids)).values(
            delivered_at=at, next_attempt_at=None, last_error=None,
        ))


def mark_failed(engine: Engine, notifier: str, outbox_ids: Collection[int], *,
                retry_at: datetime | None, error: str) -> None:
    """The send failed: retry at *retry_at*, or never (None: given up)."""
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(_members(notifier, outbox_ids)).values(
            next_attempt_at=retry_at, last_error=error,
        ))
