"""What one notifier sends now: a pure function of its queue, the policy and the time.

:func:`plan` takes a notifier's waiting rows and the rows it delivered
recently (plain :class:`Queued` records, no database) and returns the
notifications due at *now*, in this order:

1. **claims** — notifications that were sent before (failed, or interrupted by
   a restart) go again with the same key and the same members
   (:func:`resume_claims`);
2. an **ungrouped** notifier (log, MQTT) gets every other due row on its own;
3. a **grouped** one (email) gets digests on their own, and alert rows grouped
   by ``group_by``: a new group waits ``group_wait``, a group that had a message
   waits ``group_interval`` since it (:func:`ready_groups`);
4. the **hourly cap**: ready groups beyond the messages left this hour are
   folded into one "N more held back" notice (:func:`within_cap`).

The dispatcher (``monitor.notify.outbox``) loads the rows, calls :func:`plan`
and sends; tests call it with records and a clock value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.notify.base import Event, Notification, notification_key
from monitor.notify.settings import NotifySettings

__all__ = [
    "HOUR",
    "Group",
    "Policy",
    "Queued",
    "group_of",
    "last_sent",
    "plan",
    "ready_groups",
    "resume_claims",
    "sent_in_last_hour",
    "single",
    "within_cap",
]

HOUR = timedelta(hours=1)

# a group's identity: the (label, value) pairs of group_by
Group = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Queued:
    """One (outbox row, notifier) pair: waiting, or delivered recently."""

    event: Event
    attempts: int
    next_attempt_at: datetime | None  # None: delivered or given up
    delivered_at: datetime | None
    claim_key: str | None = None  # the notification already carrying the row
    claim_notice: bool = False  # …which is a "suppressed" notice

    def due(self, now: datetime) -> bool:
        return (self.next_attempt_at or now) <= now


@dataclass(frozen=True, slots=True)
class Policy:
    """Grouping and the hourly cap (``notify.grouping``, ``max_per_recipient_per_hour``)."""

    group_by: tuple[str, ...] = ("rule",)
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    cap: int = 10

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> Policy:
        grouping = settings.grouping
        return cls(tuple(grouping.group_by), grouping.group_wait, grouping.group_interval,
                   settings.max_per_recipient_per_hour)

    @property
    def lookback(self) -> timedelta:
        """How far back delivered rows matter: the cap's hour, or one group_interval."""
        return max(HOUR, self.group_interval)


def group_of(event: Event, policy: Policy) -> Group:
    return tuple((name, event.group_value(name)) for name in policy.group_by)


def single(notifier: str, row: Queued, policy: Policy) -> Notification:
    """A notification carrying one row (digests, and every row of an ungrouped notifier)."""
    return Notification(
        key=notification_key(notifier, [row.event.idempotency_key]),
        notifier=notifier, events=(row.event,), group=group_of(row.event, policy),
        cap=policy.cap, attempt=row.attempts + 1,
    )


def resume_claims(notifier: str, pending: Sequence[Queued], policy: Policy, now: datetime
                  ) -> tuple[list[Notification], int, list[Queued]]:
    """(claims due again, how many claims are open, rows no notification carries yet).

    A claim not yet due (its backoff runs) is not re-sent but still counts
    against the hourly cap.
    """
    claims: dict[str, list[Queued]] = defaultdict(list)
    fresh: list[Queued] = []
    for row in pending:
        if row.claim_key:
            claims[row.claim_key].append(row)
        else:
            fresh.append(row)
    resent: list[Notification] = []
    for key, rows in claims.items():
        if min(r.next_attempt_at or now for r in rows) > now:
            continue
        notice = any(r.claim_notice for r in rows)
        events = tuple(r.event for r in rows)
        resent.append(Notification(
            key=key, notifier=notifier,
            events=() if notice else events,
            suppressed=events if notice else (),
            group=() if notice else group_of(events[0], policy),
            cap=policy.cap,
            attempt=max(r.attempts for r in rows) + 1,
        ))
    return resent, len(claims), fresh


def last_sent(recent: Sequence[Queued], planned: Sequence[Notification], policy: Policy,
              now: datetime) -> dict[Group, datetime]:
    """When each group last had a message; a group in *planned* counts as sent *now*."""
    out: dict[Group, datetime] = {}
    for row in recent:
        if row.event.kind == "digest" or row.delivered_at is None:
            continue
        group = group_of(row.event, policy)
        if group not in out or row.delivered_at > out[group]:
            out[group] = row.delivered_at
    for notification in planned:
        if notification.group:
            out[notification.group] = max(out.get(notification.group, now), now)
    return out


def ready_groups(rows: Sequence[Queued], sent: dict[Group, datetime], policy: Policy,
                 now: datetime) -> list[tuple[Group, list[Queued]]]:
    """The groups of *rows* whose wait is over, the one with the oldest alert first."""
    groups: dict[Group, list[Queued]] = defaultdict(list)
    for row in rows:
        groups[group_of(row.event, policy)].append(row)
    ready: list[tuple[Group, list[Queued]]] = []
    for group, members in groups.items():
        previous = sent.get(group)
        if previous is not None and now - previous < policy.group_interval:
            ready_at = previous + policy.group_interval
        else:
            ready_at = min(r.event.created_at for r in members) + policy.group_wait
        if ready_at <= now:
            ready.append((group, members))
    ready.sort(key=lambda item: min(r.event.created_at for r in item[1]))
    return ready


def sent_in_last_hour(recent: Sequence[Queued], now: datetime) -> int:
    """Messages (distinct delivered_at values) of the last hour; digests do not count."""
    return len({
        r.delivered_at for r in recent
        if r.delivered_at is not None and r.delivered_at > now - HOUR
        and r.event.kind != "digest"
    })


def within_cap(notifier: str, ready: Sequence[tuple[Group, list[Queued]]], slots: int,
               policy: Policy) -> list[Notification]:
    """One message per ready group while *slots* last; past them, the last one is a notice.

    With no slot left, nothing: due groups wait for the hour to move on.
    """
    if slots <= 0 or not ready:
        return []
    if len(ready) > slots:
        keep, over = ready[: slots - 1], ready[slots - 1:]
    else:
        keep, over = ready, []
    out: list[Notification] = []
    for group, rows in keep:
        events = tuple(r.event for r in rows)
        out.append(Notification(
            key=notification_key(notifier, [e.idempotency_key for e in events]),
            notifier=notifier, events=events, group=group, cap=policy.cap,
            attempt=max(r.attempts for r in rows) + 1,
        ))
    if over:
        suppressed = tuple(r.event for _, rows in over for r in rows)
        out.append(Notification(
            key=notification_key(notifier, [e.idempotency_key for e in suppressed], notice=True),
            notifier=notifier, events=(), suppressed=suppressed, cap=policy.cap,
        ))
    return out


def plan(notifier: str, *, grouped: bool, pending: Sequence[Queued], recent: Sequence[Queued],
         policy: Policy, now: datetime) -> list[Notification]:
    """The notifications *notifier* sends at *now*, in order (see the module docstring).

    *pending*: its undelivered rows still to be tried, oldest first; *recent*:
    its rows delivered within ``policy.lookback``.
    """
    resent, open_claims, fresh = resume_claims(notifier, pending, policy, now)
    due = [r for r in fresh if r.due(now)]
    if not grouped:
        return resent + [single(notifier, r, policy) for r in due]
    planned = resent + [single(notifier, r, policy) for r in due if r.event.kind == "digest"]
    alerts = [r for r in due if r.event.kind != "digest"]
    ready = ready_groups(alerts, last_sent(recent, planned, policy, now), policy, now)
    slots = policy.cap - sent_in_last_hour(recent, now) - open_claims
    return planned + within_cap(notifier, ready, slots, policy)
