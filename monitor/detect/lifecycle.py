"""The alert lifecycle, as a pure function of (previous state, condition, now).

States follow Prometheus Alertmanager: ``inactive`` → ``pending`` (condition
true, waiting for ``for``) → ``firing`` → ``resolved`` (condition false for
``resolve_after``). A firing alert is announced once, re-announced no sooner
than ``repeat_interval``, and a resolved notice follows when it clears — but
only if its firing was announced. With ``rearm_after``, an alert that fires
again within that time of its last "firing" page is announced as a
``repeat`` (the same incident flaring again) rather than as a new page. A
muted alert (silenced or inhibited) moves through the same states and simply
announces nothing; when the mute ends while it still fires, the firing is
announced then.

:func:`step` has no clock and no I/O, so evaluating the same instant twice
yields the same state and no second announcement, and an instant older than
the last evaluation changes nothing. The engine keeps the state in SQL; the
NAB benchmark keeps it in memory; both call this function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["AlertState", "Announcement", "State", "Timing", "step"]

State = Literal["inactive", "pending", "firing", "resolved"]
Announcement = Literal["firing", "repeat", "resolved"]


@dataclass(frozen=True, slots=True)
class Timing:
    """A rule's timing parameters."""

    for_: timedelta = timedelta(0)
    repeat_interval: timedelta = timedelta(hours=4)
    resolve_after: timedelta = timedelta(minutes=15)
    rearm_after: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class AlertState:
    """Everything the lifecycle needs to remember about one alert."""

    state: State = "inactive"
    active_since: datetime | None = None  # condition true since (this episode)
    fired_at: datetime | None = None  # last time the alert started firing
    resolved_at: datetime | None = None
    last_true_at: datetime | None = None
    last_notified_at: datetime | None = None  # last firing/repeat announcement
    last_eval_at: datetime | None = None
    notify_seq: int = 0  # announcements in this firing episode (idempotency keys)
    incident_at: datetime | None = None  # when the last "firing" page went out

    @property
    def announced(self) -> bool:
        """Whether the current firing episode has been announced."""
        return (
            self.fired_at is not None
            and self.last_notified_at is not None
            and self.last_notified_at >= self.fired_at
        )


def step(
    prev: AlertState, condition: bool, now: datetime, timing: Timing, *, muted: bool = False
) -> tuple[AlertState, Announcement | None]:
    """Advance one alert to *now*; returns the new state and what to announce (if anything)."""
    if prev.last_eval_at is not None and now <= prev.last_eval_at:
        # the same instant again, or an older one: nothing new can be learnt
        return prev, None
    cur = replace(prev, last_eval_at=now)
    if condition:
        cur = replace(cur, last_true_at=now)
        if cur.state in ("inactive", "resolved"):
            cur = replace(cur, state="pending", active_since=now, resolved_at=None)
        if (
            cur.state == "pending"
            and cur.active_since is not None
            and now - cur.active_since >= timing.for_
        ):
            cur = replace(cur, state="firing", fired_at=now, notify_seq=0)
    elif cur.state == "pending":
        cur = replace(cur, state="inactive", active_since=None)
    elif cur.state == "firing":
        quiet_since = cur.last_true_at or cur.fired_at or now
        if now - quiet_since >= timing.resolve_after:
            was_announced = cur.announced
            cur = replace(cur, state="resolved", resolved_at=now, active_since=None)
            if was_announced and not muted:
                return cur, "resolved"
            return cur, None
    if cur.state != "firing" or muted:
        return cur, None
    if not cur.announced:
        flare = (
            timing.rearm_after > timedelta(0)
            and cur.incident_at is not None
            and now - cur.incident_at < timing.rearm_after
        )
        if flare:
            # the incident paged recently: this is a reminder, not a new page
            return replace(cur, last_notified_at=now, notify_seq=cur.notify_seq + 1), "repeat"
        return (
            replace(cur, last_notified_at=now, notify_seq=cur.notify_seq + 1, incident_at=now),
            "firing",
        )
    if cur.last_notified_at is not None and now - cur.last_notified_at >= timing.repeat_interval:
        return replace(cur, last_notified_at=now, notify_seq=cur.notify_seq + 1), "repeat"
    return cur, None
