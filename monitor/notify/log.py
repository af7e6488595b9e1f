"""The log notifier: one line per alert transition, on by default.

So ``make run`` without a mail server still shows alerts on the console. The
line carries the rule, labels, numbers and the idempotency key, never post
text or author handles (the payload has none; the summary is written by
detection for humans and holds no post text either).
"""

from __future__ import annotations

import logging

from monitor.notify.base import Event, Notification, Notifier

__all__ = ["LogNotifier", "format_line"]

log = logging.getLogger("monitor.alerts")


def _num(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.4g}"


def format_line(event: Event, key: str) -> str:
    """``alert FIRING spike #metoo value=4.2 threshold=3 since=… key=…: summary``."""
    p = event.payload
    if event.kind == "digest":
        return f"digest {p.get('date', '')} key={key[:12]}"
    labels = " ".join(f"{k}={v}" for k, v in sorted(event.labels.items()) if k != "tag")
    state = "FIRING (repeat)" if event.kind == "repeat" else event.state.upper()
    tag = f" #{event.tag}" if event.tag else ""
    since = p.get("resolved_at") if event.state == "resolved" else p.get("active_since")
    summary = str(p.get("summary") or "").replace("\n", " ")[:200]
    return (
        f"alert {state} {event.rule}{tag} value={_num(p.get('value'))} "
        f"threshold={_num(p.get('threshold'))} baseline={_num(p.get('baseline'))} "
        f"{'at' if event.state == 'resolved' else 'since'}={since or '-'}"
        f"{' ' + labels if labels else ''} key={key[:12]}: {summary}"
    )


class LogNotifier(Notifier):
    """Writes to the ``monitor.alerts`` logger at WARNING (firing) / INFO (resolved)."""

    def __init__(self, name: str = "log") -> None:
        super().__init__(name=name, grouped=False)

    async def send(self, notification: Notification) -> None:
        for event in notification.events:
            level = logging.WARNING if event.state == "firing" else logging.INFO
            log.log(level, "%s", format_line(event, notification.key))
