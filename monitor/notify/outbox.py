"""The dispatcher: outbox rows → notifiers, with grouping, an hourly cap and retries.

Guarantee: at-least-once per notifier. Before a notification is sent, its
idempotency key is claimed on every ``deliveries`` row it carries (committed),
then it is sent, then the rows are marked delivered. A crash between the send
and the mark (a window of one local database commit) re-sends the *same*
members under the *same* key, so the receiver can drop the copy (email:
identical ``Message-ID``; MQTT: ``idempotency_key`` in the payload).

Each pass: enqueue the digest when due, route new outbox rows to the notifiers
that accept them, then per notifier load its queue, :func:`~monitor.notify.planning.plan`
what is due, and send it. What the ``deliveries`` columns mean is in
:mod:`monitor.store.outbox`; what is sent when is in :mod:`monitor.notify.planning`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.backoff import Backoff
from monitor.config import Config
from monitor.errors import NotifyError
from monitor.locks import RoleLock
from monitor.notify.base import Event, Notification, Notifier
from monitor.notify.planning import Policy, Queued, plan
from monitor.notify.settings import RetrySettings
from monitor.outage import DatabaseOutage
from monitor.store import outbox as store
from monitor.store.outbox import Delivery, OutboxEntry

__all__ = ["Dispatcher", "PendingDelivery", "pending_deliveries", "retry_schedule"]

log = logging.getLogger("monitor.notify")

SEND_TIMEOUT_S = 120.0


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


def _event(entry: OutboxEntry) -> Event:
    return Event(outbox_id=entry.id, idempotency_key=entry.idempotency_key, kind=entry.kind,
                 payload=entry.payload, created_at=entry.created_at)


def _queued(delivery: Delivery) -> Queued:
    return Queued(_event(delivery.entry), delivery.attempts, delivery.next_attempt_at,
                  delivery.delivered_at, delivery.claim_key, delivery.claim_notice)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def retry_schedule(retry: RetrySettings) -> Backoff:
    """The outbox's retry waits: ``notify.retry.initial`` is the shortest first wait.

    The shared equal-jitter :class:`~monitor.backoff.Backoff` draws each wait
    from the upper half of its step, so its base is twice ``initial``: waits of
    initial…2×initial, then 2×…4×initial, doubling up to ``notify.retry.max``.
    """
    return Backoff.between(2 * retry.initial, retry.max)


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
        role: RoleLock | None = None,
        outage: DatabaseOutage | None = None,
    ) -> None:
        self.engine = engine
        # the delivery role (PostgreSQL advisory lock): a second process on the same
        # database stands by instead of sending the same alerts again
        self.role = role
        # shared with the service: a database outage is one log line, not one per pass
        self.outage = outage or DatabaseOutage()
        self.config = config
        self.settings = config.notify
        self.policy = Policy.from_settings(config.notify)
        self.notifiers = list(notifiers)
        self.clock = clock
        self._backoff = retry_schedule(config.notify.retry)
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        # a notifier that just failed is left alone until its backoff ends, so a
        # dead server sees one attempt per backoff step, not one per poll
        self._paused_until: dict[str, datetime] = {}
        # (outbox id, notifier) given up by this process and already logged: closing
        # the row does not log it a second time (one WARNING per give-up)
        self._said_given_up: set[tuple[int, str]] = set()
        names = [n.name for n in self.notifiers]
        if len(set(names)) != len(names):
            raise NotifyError(f"notify: two notifiers share a name: {sorted(names)!r}")
        for notifier in self.notifiers:
            notifier.bind(engine)

    # ----------------------------------------------------------------- public

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass: route new rows, send what is due. Returns notifications sent."""
        now = now or self.clock()
        if self.role is not None and not await asyncio.to_thread(self.role.held):
            return 0
        await asyncio.to_thread(self._enqueue_digest, now)
        await asyncio.to_thread(store.route, self.engine, self._accepting)
        sent = 0
        for notifier in self.notifiers:
            if self._paused_until.get(notifier.name, now) > now:
                continue
            due = await asyncio.to_thread(self._plan, notifier, now)
            for notification in due:
                ok = await self._deliver(notifier, notification, now)
                if not ok:
                    break  # the notifier is down: the rest wait for their backoff too
                sent += 1
        given_up, resumed = await asyncio.to_thread(store.close_finished, self.engine, now,
                                                    self._accepting)
        for d in resumed:  # neither delivered nor given up: never closed silently
            log.warning("notify: %s had neither delivered nor given up outbox row %d "
                        "(%d attempt%s); sending it again", d.notifier, d.outbox_id,
                        d.attempts, "" if d.attempts == 1 else "s")
        for d in given_up:  # one line per give-up, also when the giver-up died before its line
            if (d.outbox_id, d.notifier) in self._said_given_up:
                self._said_given_up.discard((d.outbox_id, d.notifier))
                continue
            log.warning("notify: outbox row %d closed without %s delivering it: %s",
                        d.outbox_id, d.notifier, d.last_error or "given up")
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
                    if not self.outage.waiting():
                        await self.run_once()
                        self.outage.ok()
                except Exception as exc:  # the loop must survive a database hiccup
                    if not self.outage.failed(exc):  # an outage is one line, from self.outage
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

    # ------------------------------------------------------ routing, planning

    def _accepting(self, entry: OutboxEntry) -> list[str]:
        """The notifiers that want this outbox row (each gets a deliveries row)."""
        event = _event(entry)
        return [n.name for n in self.notifiers if n.accepts(event)]

    def _enqueue_digest(self, now: datetime) -> None:
        email = self.settings.email
        if not (email.enabled and email.digest.enabled) or now.hour < email.digest.hour_utc:
            return
        if not any(n.wants_digest for n in self.notifiers):
            return
        day = now.date().isoformat()
        store.enqueue_once(
            self.engine, key=f"digest-{day}", kind="digest",
            payload={"kind": "digest", "date": day, "rule": "digest", "labels": {},
                     "state": "digest", "summary": f"daily digest {day}"},
            created_at=now,
        )

    def _plan(self, notifier: Notifier, now: datetime) -> list[Notification]:
        pending, recent = store.load_deliveries(self.engine, notifier.name, now,
                                                self.policy.lookback)
        return plan(notifier.name, grouped=notifier.grouped,
                    pending=[_queued(d) for d in pending], recent=[_queued(d) for d in recent],
                    policy=self.policy, now=now)

    # --------------------------------------------------------------- delivery

    def _stamp(self, now: datetime) -> datetime:
        # distinct per notification: the hourly cap counts distinct delivered_at values
        stamp = max(now, self._last_stamp + timedelta(microseconds=1))
        self._last_stamp = stamp
        return stamp

    def _failed(self, notification: Notification, now: datetime, error: str) -> bool:
        """Schedule a retry with backoff; returns False when the rows were given up."""
        attempt = max(notification.attempt, 1)
        oldest = min(e.created_at for e in notification.members)
        give_up = now - oldest >= self.settings.retry.give_up_after
        retry_at = None
        if give_up:
            text = f"gave up after {attempt} attempts: {error}"
            self._said_given_up.update((e.outbox_id, notification.notifier)
                                       for e in notification.members)
        else:
            retry_at = now + timedelta(seconds=self._backoff.delay_after(attempt))
            self._paused_until[notification.notifier] = retry_at
            text = f"failed (attempt {attempt}): {error}"
        store.mark_failed(self.engine, notification.notifier,
                          [e.outbox_id for e in notification.members], retry_at=retry_at,
                          error=text)
        return not give_up

    async def _deliver(self, notifier: Notifier, notification: Notification,
                       now: datetime) -> bool:
        members = [e.outbox_id for e in notification.members]
        await asyncio.to_thread(store.claim, self.engine, notifier.name, members,
                                key=notification.key, notice=notification.is_notice)
        try:
            await asyncio.wait_for(notifier.send(notification), SEND_TIMEOUT_S)
        except asyncio.CancelledError:
            raise  # shutdown mid-send: the claim makes the retry reuse the key
        except Exception as exc:
            error = _short(exc)
            kept = await asyncio.to_thread(self._failed, notification, now, error)
            log.warning(
                "notify: %s could not deliver %s (%d alert%s): %s; %s",
                notifier.name, notification.key[:12], len(notification.members),
                "" if len(notification.members) == 1 else "s", error,
                "will retry" if kept else "giving up",
            )
            return False
        await asyncio.to_thread(store.mark_delivered, self.engine, notifier.name, members,
                                self._stamp(now))
        return True


def pending_deliveries(engine: Engine, limit: int = 200) -> list[PendingDelivery]:
    """Undelivered (outbox row, notifier) pairs, oldest first."""
    out = []
    for d in store.undelivered(engine, limit):
        event = _event(d.entry)
        out.append(PendingDelivery(
            outbox_id=event.outbox_id, notifier=d.notifier, kind=event.kind, rule=event.rule,
            tag=event.tag, created_at=event.created_at, attempts=d.attempts,
            next_attempt_at=d.next_attempt_at, last_error=d.last_error,
        ))
    return out
