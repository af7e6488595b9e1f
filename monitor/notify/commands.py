"""CLI: ``monitor outbox`` (what is waiting to be delivered) and ``monitor digest``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError

from monitor.cli import (
    ConfigOption,
    OutputFormat,
    console,
    emit_rows,
    fail,
    get_config,
    open_store,
    user_errors,
    validation_error,
)
from monitor.notify.base import Event, Notification, notification_key
from monitor.notify.email import EmailNotifier, compose
from monitor.notify.outbox import pending_deliveries
from monitor.notify.settings import Recipient

__all__ = ["register"]


def _age(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "–"
    seconds = int((ts - now).total_seconds())
    sign = "in " if seconds >= 0 else ""
    seconds = abs(seconds)
    text = (f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600
            else f"{seconds // 60}m{seconds % 60:02d}s")
    return sign + text + ("" if sign else " ago")


@user_errors
def outbox_command(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(help="rows to show at most")] = 200,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
) -> None:
    """List alert notifications not yet delivered, per notifier (retries, last error)."""
    cfg = get_config(config)
    rows = pending_deliveries(open_store(cfg), limit)
    now = datetime.now(UTC)
    out = [{
        "outbox_id": r.outbox_id, "notifier": r.notifier, "kind": r.kind, "rule": r.rule,
        "tag": r.tag or "", "created": r.created_at.strftime("%Y-%m-%d %H:%M"),
        "attempts": r.attempts,
        "next_attempt": "gave up" if r.next_attempt_at is None else _age(r.next_attempt_at, now),
        "last_error": (r.last_error or "")[:120],
    } for r in rows]
    if not out and fmt is OutputFormat.table:
        console.print("nothing waiting: every notification has been delivered", highlight=False)
        return
    emit_rows(out, fmt, title="Pending deliveries")


@user_errors
def digest_command(
    config: ConfigOption = None,
    to: Annotated[str | None, typer.Option(help="recipient (default: the first configured)")]
    = None,
    send: Annotated[bool, typer.Option("--send", help="send it now instead of printing")]
    = False,
) -> None:
    """Print today's digest (plain text) or send it with --send."""
    cfg = get_config(config)
    recipients = cfg.notify.email.recipients
    if to is not None:
        matching = [r for r in recipients if r.address == to]
        try:
            recipient = matching[0] if matching else Recipient(address=to)
        except ValidationError as exc:
            raise validation_error("--to", exc) from None
    elif recipients:
        recipient = recipients[0]
    else:
        recipient = Recipient(address="you@example.org")
    now = datetime.now(UTC)
    day = now.date().isoformat()
    event = Event(0, f"digest-{day}-manual", "digest",
                  {"kind": "digest", "date": day, "rule": "digest", "labels": {}}, now)
    notification = Notification(
        key=notification_key(f"email:{recipient.address}", [event.idempotency_key]),
        notifier=f"email:{recipient.address}", events=(event,))
    engine = open_store(cfg)
    if not send:
        msg = compose(cfg, engine, recipient, notification, now)
        body = msg.get_body(preferencelist=("plain",))
        console.print(f"Subject: {msg['Subject']}\n", highlight=False, markup=False)
        console.print(body.get_content() if body else "", highlight=False, markup=False)
        return
    if not cfg.notify.email.enabled:
        fail("notify.email.enabled is false: configure notify.email.smtp first", 2)
    notifier = EmailNotifier(cfg, recipient, engine=engine)
    asyncio.run(notifier.send(notification))
    console.print(f"digest sent to {recipient.address}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the notify commands to the ``monitor`` app (idempotent)."""
    known = {c.name for c in app.registered_commands}
    for name, fn in (("outbox", outbox_command), ("digest", digest_command)):
        if name not in known:
            app.command(name)(fn)
