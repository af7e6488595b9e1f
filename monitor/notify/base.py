"""The records a notifier receives and the interface every notifier implements."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

__all__ = ["Event", "Notification", "Notifier", "notification_key"]


@dataclass(frozen=True, slots=True)
class Event:
    """One outbox row as a notifier sees it (payload as in contracts.md)."""

    outbox_id: int
    idempotency_key: str
    kind: str  # firing | resolved | repeat | digest
    payload: Mapping[str, Any]
    created_at: datetime

    @property
    def labels(self) -> Mapping[str, str]:
        labels = self.payload.get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    @property
    def rule(self) -> str:
        return str(self.payload.get("rule") or self.kind)

    @property
    def tag(self) -> str | None:
        return self.labels.get("tag")

    @property
    def state(self) -> str:
        """firing or resolved (a repeat is still firing)."""
        state = self.payload.get("state")
        if isinstance(state, str) and state:
            return state
        return "resolved" if self.kind == "resolved" else "firing"

    def group_value(self, name: str) -> str:
        """A label value for grouping; ``rule`` and ``state`` are pseudo-labels."""
        if name == "rule":
            return self.rule
        if name == "state":
            return self.state
        return self.labels.get(name, "")


@dataclass(frozen=True, slots=True)
class Notification:
    """What one notifier sends at once: a group of events, or a suppression notice.

    ``key`` is the idempotency key (40 hex chars). It is written to the
    deliveries rows *before* sending, so a re-send after a crash carries the
    same key (and the same email Message-ID).
    """

    key: str
    notifier: str
    events: tuple[Event, ...]
    group: tuple[tuple[str, str], ...] = ()
    suppressed: tuple[Event, ...] = ()  # set on a "N more suppressed" notice
    cap: int = 0  # the hourly cap that caused the notice
    attempt: int = 1

    @property
    def is_notice(self) -> bool:
        return not self.events and bool(self.suppressed)

    @property
    def is_digest(self) -> bool:
        return len(self.events) == 1 and self.events[0].kind == "digest"

    @property
    def members(self) -> tuple[Event, ...]:
        return self.events + self.suppressed


def notification_key(notifier: str, member_keys: list[str], *, notice: bool = False) -> str:
    """sha256 over the notifier and the outbox keys it carries, hex[:40]."""
    h = hashlib.sha256()
    h.update(notifier.encode())
    h.update(b"\x00notice" if notice else b"\x00group")
    for key in sorted(member_keys):
        h.update(b"\x00" + key.encode())
    return h.hexdigest()[:40]


@dataclass
class Notifier:
    """Base of every notifier. Subclasses override :meth:`send` (and maybe the rest).

    ``grouped``: the dispatcher groups events (group_by / group_wait /
    group_interval) and applies the per-recipient hourly cap. Ungrouped
    notifiers (log, MQTT) get every event on its own, immediately.
    """

    name: str
    grouped: bool = False
    rules: frozenset[str] = field(default_factory=frozenset)
    tags: frozenset[str] = field(default_factory=frozenset)
    wants_digest: bool = False

    def accepts(self, event: Event) -> bool:
        if event.kind == "digest":
            return self.wants_digest
        if self.rules and event.rule not in self.rules:
            return False
        return not (self.tags and event.tag not in self.tags)

    def bind(self, engine: Engine) -> None:
        """Give the notifier read access to the store (charts, co-tags)."""

    async def start(self) -> None:
        """Open long-lived connections; failures here are retried on send."""

    async def send(self, notification: Notification) -> None:
        """Deliver or raise :class:`~monitor.errors.NotifyError`."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close connections (MQTT publishes its offline status here)."""
