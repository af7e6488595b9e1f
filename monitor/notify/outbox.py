"""The dispatcher: outbox rows → notifiers, with grouping, an hourly cap and retries.

Guarantee: at-least-once per notifier. Before a notification is sent, its
idempotency key is written to every ``deliveries`` row it carries (committed),
then it is sent, then the rows are marked delivered. A crash between the send
and the mark (a window of one local database commit) re-sends the *same*
members under the *same* key, so the receiver can drop the copy (email:
identical ``Message-ID``; MQTT: ``idempotency_key`` in the payload).

``deliveries`` columns as used here:

- ``next_attempt_at``: due time; NULL once delivered or given up.
- ``delivered_at``: when the notification carrying the row went out. Rows sent
  together share this timestamp, which is how the hourly cap counts messages.
- ``last_error``: ``[<key>] <status>`` while a notification is in flight or
  failing; after a hand-over to a "suppressed" notice, says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, select, update

from monitor.config import Config
from monitor.errors import NotifyError
from monitor.notify.base import Event, Notification, Notifier, notification_key
from monitor.store.repository import insert_for
from monitor.store.schema import deliveries, outbox

__all__ = ["Dispatcher", "PendingDelivery", "build_notifiers", "pending_deliveries"]

log = logging.getLogger("monitor.notify")

_MARK = re.compile(r"^\[([0-9a-f]{40})\]")
_HOUR = timedelta(hours=1)
SEND_TIMEOUT_S = 120.0


def build_notifiers(config: Config, engine: Engine | None = None) -> list[Notifier]:
    """The notifiers the configuration enables: log, one email per recipient, MQTT."""
    from monitor.notify.email import EmailNotifier
    from monitor.notify.log import LogNotifier
    from monitor.notify.mqtt import MqttNotifier

    settings = config.notify
    out: list[Notifier] = []
    if settings.log.enabled:
        out.append(LogNotifier())
    if settings.email.enabled:
        for recipient in settings.email.recipients:
            out.append(EmailNotifier(config, recipient, engine=engine))
    if settings.mqtt.enabled:
        out.append(MqttNotifier(settings.mqtt))
    return out


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """One undelivered (outbox row, notifier) pair, for ``monitor outbox``."""

    outbox_id: int
    notifier: str
    kind: str
    rule: str
    tag: str | None
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(slots=True)
class _Row:
    event: Event
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None

    @property
    def marker(self) -> str | None:
        match = _MARK.match(self.last_error or "")
        return match.group(1) if match else None


def _event(row: Any) -> Event:
    payload = row.payload if isinstance(row.payload, dict) else {}
    return Event(
        outbox_id=int(row.id),
        idempotency_key=str(row.idempotency_key),
        kind=str(row.kind),
        payload=payload,
        created_at=row.created_at,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


class Dispatcher:
    """Delivers outbox rows to *notifiers*; call :meth:`run_once` or :meth:`run`.

    All times are UTC. ``clock`` is injectable so tests can move time.
    """

    def __init__(
        self,
        engine: Engine,
        config: Config,
        notifiers: Sequence[Notifier],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.config = config
        self.settings = config.notify
        self.notifiers = list(notifiers)
        self.clock = clock
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        # a notifier that just failed is left alone until its backoff ends, so a
        # dead server sees one attempt per backoff step, not one per poll
        self._paused_until: dict[str, datetime] = {}
        names = [n.name for n in self.notifiers]
        if len(set(names)) != len(names):
            raise NotifyError(f"notify: two notifiers share a name: {sorted(names)!r}")
        for notifier in self.notifiers:
            notifier.bind(engine)

    # ----------------------------------------------------------------- public

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass: route new rows, send what is due. Returns notifications sent."""
        now = now or self.clock()
        await asyncio.to_thread(self._enqueue_digest, now)
        await asyncio.to_thread(self._route, now)
        sent = 0
        for notifier in self.notifiers:
            if self._paused_until.get(notifier.name, now) > now:
                continue
            plan = await asyncio.to_thread(self._plan, notifier, now)
            for notification in plan:
                ok = await self._deliver(notifier, notification, now)
                if not ok:
                    break  # the notifier is down: the rest wait for their backoff too
                sent += 1
        await asyncio.to_thread(self._finish, now)
        return sent

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until *stop* is set, every ``notify.poll_interval``."""
        stop = stop or asyncio.Event()
        for notifier in self.notifiers:
            try:
                await notifier.start()
            except Exception as exc:  # a broker down at start is retried on send
                log.warning("notifier %s did not start: %s", notifier.name, _short(exc))
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except Exception:  # the loop must survive a database hiccup
                    log.exception("notify: dispatch pass failed; retrying next tick")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), self.settings.poll_interval.total_seconds()
                    )
        finally:
            for notifier in self.notifiers:
                try:
                    await notifier.aclose()
                except Exception as exc:
                    log.warning("notifier %s did not close cleanly: %s", notifier.name,
                                _short(exc))

    # ---------------------------------------------------------------- routing

    def _enqueue_digest(self, now: datetime) -> None:
        email = self.settings.email
        if not (email.enabled and email.digest.enabled) or now.hour < email.digest.hour_utc:
            return
        if not any(n.wants_digest for n in self.notifiers):
            return
        day = now.date().isoformat()
        with self.engine.begin() as conn:
            conn.execute(
                insert_for(conn, outbox)
                .values(
                    idempotency_key=f"digest-{day}",
                    kind="digest",
                    payload={"kind": "digest", "date": day, "rule": "digest",
                             "labels": {}, "state": "digest",
                             "summary": f"daily digest {day}"},
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
            )

    def _route(self, now: datetime) -> None:
        """Create a deliveries row for every (open outbox row, accepting notifier)."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(outbox).where(outbox.c.done_at.is_(None))).all()
            if not rows:
                return
            have = {
                (r.outbox_id, r.notifier)
                for r in conn.execute(
                    select(deliveries.c.outbox_id, deliveries.c.notifier).where(
                        deliveries.c.outbox_id.in_([r.id for r in rows])
                    )
                )
            }
            new: list[dict[str, Any]] = []
            for row in rows:
                event = _event(row)
                for notifier in self.notifiers:
                    if (event.outbox_id, notifier.name) in have or not notifier.accepts(event):
                        continue
                    new.append({"outbox_id": event.outbox_id, "notifier": notifier.name,
                                "attempts": 0, "next_attempt_at": event.created_at})
            if new:
                conn.execute(
                    insert_for(conn, deliveries).on_conflict_do_nothing(
                        index_elements=["outbox_id", "notifier"]
                    ),
                    new,
                )

    def _finish(self, now: datetime) -> None:
        """Close outbox rows every accepting notifier has delivered (or given up on)."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(outbox).where(outbox.c.done_at.is_(None))).all()
            if not rows:
                return
            state: dict[tuple[int, str], bool] = {}
            for d in conn.execute(
                select(deliveries).where(deliveries.c.outbox_id.in_([r.id for r in rows]))
            ):
                state[(d.outbox_id, d.notifier)] = (
                    d.delivered_at is not None or d.next_attempt_at is None
                )
            done: list[int] = []
            for row in rows:
                event = _event(row)
                wanted = [n.name for n in self.notifiers if n.accepts(event)]
                if all(state.get((event.outbox_id, name), False) for name in wanted):
                    done.append(event.outbox_id)
            if done:
                conn.execute(update(outbox).where(outbox.c.id.in_(done)).values(done_at=now))

    # --------------------------------------------------------------- planning

    def _load(self, conn: Connection, notifier: str, now: datetime) -> tuple[
        list[_Row], list[_Row]
    ]:
        """(undelivered rows, rows delivered within the last hour / group_interval)."""
        window = max(_HOUR, self.settings.grouping.group_interval)
        query = (
            select(outbox, deliveries.c.attempts, deliveries.c.next_attempt_at,
                   deliveries.c.delivered_at, deliveries.c.last_error)
            .join(deliveries, deliveries.c.outbox_id == outbox.c.id)
            .where(deliveries.c.notifier == notifier)
        )
        pending = conn.execute(
            query.where(deliveries.c.delivered_at.is_(None),
                        deliveries.c.next_attempt_at.is_not(None))
            .order_by(outbox.c.created_at, outbox.c.id)
        ).all()
        recent = conn.execute(
            query.where(and_(deliveries.c.delivered_at.is_not(None),
                             deliveries.c.delivered_at > now - window))
        ).all()

        def wrap(r: Any) -> _Row:
            return _Row(_event(r), int(r.attempts or 0), r.next_attempt_at, r.delivered_at,
                        r.last_error)

        return [wrap(r) for r in pending], [wrap(r) for r in recent]

    def _group_of(self, event: Event) -> tuple[tuple[str, str], ...]:
        return tuple((name, event.group_value(name)) for name in self.settings.grouping.group_by)

    def _plan(self, notifier: Notifier, now: datetime) -> list[Notification]:
        with self.engine.connect() as conn:
            pending, recent = self._load(conn, notifier.name, now)
        plan: list[Notification] = []

        # 1. anything already in flight goes again with the same key and members
        in_flight: dict[str, list[_Row]] = defaultdict(list)
        fresh: list[_Row] = []
        for row in pending:
            (in_flight[row.marker] if row.marker else fresh).append(row)
        for key, rows in in_flight.items():
            if min(r.next_attempt_at or now for r in rows) > now:
                continue
            # the marker is "[<40 hex>] notice …" for a suppression notice
            notice = any((r.last_error or "")[43:].startswith("notice") for r in rows)
            events = tuple(r.event for r in rows)
            plan.append(Notification(
                key=key, notifier=notifier.name,
                events=() if notice else events,
                suppressed=events if notice else (),
                group=() if notice else self._group_of(events[0]),
                cap=self.settings.max_per_recipient_per_hour,
                attempt=max(r.attempts for r in rows) + 1,
            ))
        due = [r for r in fresh if (r.next_attempt_at or now) <= now]

        if not notifier.grouped:
            for row in due:
                plan.append(self._single(notifier, row))
            return plan

        digests = [r for r in due if r.event.kind == "digest"]
        for row in digests:
            plan.append(self._single(notifier, row))
        alerts = [r for r in due if r.event.kind != "digest"]

        grouping = self.settings.grouping
        last_sent: dict[tuple[tuple[str, str], ...], datetime] = {}
        for row in recent:
            if row.event.kind == "digest" or row.delivered_at is None:
                continue
            group = self._group_of(row.event)
            if group not in last_sent or row.delivered_at > last_sent[group]:
                last_sent[group] = row.delivered_at
        for planned in plan:  # a re-sent in-flight notification counts as sent now
            if planned.group:
                last_sent[planned.group] = max(last_sent.get(planned.group, now), now)
        groups: dict[tuple[tuple[str, str], ...], list[_Row]] = defaultdict(list)
        for row in alerts:
            groups[self._group_of(row.event)].append(row)
        ready: list[tuple[tuple[tuple[str, str], ...], list[_Row]]] = []
        for group, rows in groups.items():
            previous = last_sent.get(group)
            if previous is not None and now - previous < grouping.group_interval:
                ready_at = previous + grouping.group_interval
            else:
                ready_at = min(r.event.created_at for r in rows) + grouping.group_wait
            if ready_at <= now:
                ready.append((group, rows))
        ready.sort(key=lambda item: min(r.event.created_at for r in item[1]))

        # the hourly cap counts messages (distinct delivered_at), digests excluded
        sent_in_hour = len({
            r.delivered_at for r in recent
            if r.delivered_at is not None and r.delivered_at > now - _HOUR
            and r.event.kind != "digest"
        })
        cap = self.settings.max_per_recipient_per_hour
        slots = cap - sent_in_hour - len(in_flight)
        if slots <= 0 or not ready:
            return plan  # over the cap: due groups wait for the window to move
        if len(ready) > slots:
            keep, over = ready[: slots - 1], ready[slots - 1:]
        else:
            keep, over = ready, []
        for group, rows in keep:
            events = tuple(r.event for r in rows)
            plan.append(Notification(
                key=notification_key(notifier.name, [e.idempotency_key for e in events]),
                notifier=notifier.name, events=events, group=group, cap=cap,
                attempt=max(r.attempts for r in rows) + 1,
            ))
        if over:
            suppressed = tuple(r.event for _, rows in over for r in rows)
            plan.append(Notification(
                key=notification_key(notifier.name, [e.idempotency_key for e in suppressed],
                                     notice=True),
                notifier=notifier.name, events=(), suppressed=suppressed, cap=cap,
            ))
        return plan

    def _single(self, notifier: Notifier, row: _Row) -> Notification:
        return Notification(
            key=notification_key(notifier.name, [row.event.idempotency_key]),
            notifier=notifier.name, events=(row.event,), group=self._group_of(row.event),
            cap=self.settings.max_per_recipient_per_hour, attempt=row.attempts + 1,
        )

    # --------------------------------------------------------------- delivery

    def _stamp(self, now: datetime) -> datetime:
        # distinct per notification: the hourly cap counts distinct delivered_at values
        stamp = max(now, self._last_stamp + timedelta(microseconds=1))
        self._last_stamp = stamp
        return stamp

    def _members_where(self, notification: Notification) -> Any:
        return and_(
            deliveries.c.notifier == notification.notifier,
            deliveries.c.outbox_id.in_([e.outbox_id for e in notification.members]),
        )

    def _mark_in_flight(self, notification: Notification) -> None:
        status = "notice sending" if notification.is_notice else "sending"
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries).where(self._members_where(notification)).values(
                    attempts=deliveries.c.attempts + 1,
                    last_error=f"[{notification.key}] {status}",
                )
            )

    def _mark_delivered(self, notification: Notification, stamp: datetime) -> None:
        note = (f"suppressed by the hourly cap; summarised in notice {notification.key}"
                if notification.is_notice else None)
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries).where(self._members_where(notification)).values(
                    delivered_at=stamp, next_attempt_at=None, last_error=note,
                )
            )

    def _mark_failed(self, notification: Notification, now: datetime, error: str) -> bool:
        """Schedule a retry with backoff; returns False when the rows were given up."""
        retry = self.settings.retry
        attempt = max(notification.attempt, 1)
        delay = min(retry.initial * (2 ** (attempt - 1)), retry.max)
        delay = delay * random.uniform(0.8, 1.0)  # spread retries of many rows
        oldest = min(e.created_at for e in notification.members)
        give_up = now - oldest >= retry.give_up_after
        if not give_up:
            self._paused_until[notification.notifier] = now + delay
        kind = "notice failed" if notification.is_notice else "failed"
        with self.engine.begin() as conn:
            conn.execute(
                update(deliveries).where(self._members_where(notification)).values(
                    next_attempt_at=None if give_up else now + delay,
                    last_error=(
                        f"[{notification.key}] gave up after {attempt} attempts: {error}"
                        if give_up else f"[{notification.key}] {kind} (attempt {attempt}): {error}"
                    ),
                )
            )
        return not give_up

    async def _deliver(self, notifier: Notifier, notification: Notification,
                       now: datetime) -> bool:
        await asyncio.to_thread(self._mark_in_flight, notification)
        try:
            await asyncio.wait_for(notifier.send(notification), SEND_TIMEOUT_S)
        except asyncio.CancelledError:
            raise  # shutdown mid-send: the in-flight mark makes the retry reuse the key
        except Exception as exc:
            error = _short(exc)
            kept = await asyncio.to_thread(self._mark_failed, notification, now, error)
            log.warning(
                "notify: %s could not deliver %s (%d alert%s): %s; %s",
                notifier.name, notification.key[:12], len(notification.members),
                "" if len(notification.members) == 1 else "s", error,
                "will retry" if kept else "giving up",
            )
            return False
        await asyncio.to_thread(self._mark_delivered, notification, self._stamp(now))
        return True


def pending_deliveries(engine: Engine, limit: int = 200) -> list[PendingDelivery]:
    """Undelivered (outbox row, notifier) pairs, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox, deliveries.c.notifier, deliveries.c.attempts,
                   deliveries.c.next_attempt_at, deliveries.c.last_error)
            .join(deliveries, deliveries.c.outbox_id == outbox.c.id)
            .where(deliveries.c.delivered_at.is_(None))
            .order_by(outbox.c.created_at, outbox.c.id, deliveries.c.notifier)
            .limit(limit)
        ).all()
    out = []
    for r in rows:
        event = _event(r)
        out.append(PendingDelivery(
            outbox_id=event.outbox_id, notifier=str(r.notifier), kind=event.kind,
            rule=event.rule, tag=event.tag, created_at=event.created_at,
            attempts=int(r.attempts or 0), next_attempt_at=r.next_attempt_at,
            last_error=r.last_error,
        ))
    return out
