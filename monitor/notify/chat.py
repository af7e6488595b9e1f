"""Alerts where newsrooms are: Apprise (Slack, Matrix, Teams, Discord, Telegram …) and a
plain signed JSON webhook.

Both are grouped notifiers: they ride the outbox like email does — Alertmanager
grouping (``notify.grouping``), the hourly cap with its "N more suppressed"
notice, retries with backoff, and one idempotency key per message that a
re-send after a crash reuses.

* :class:`AppriseNotifier` hands a title and a plain-text body to the
  `Apprise <https://github.com/caronc/apprise>`_ library, which speaks to some
  hundred services through URLs (``slack://…``, ``matrix://…``,
  ``msteams://…``, ``discord://…``, ``tgram://…``, ``json://…``). It needs the
  ``apprise`` extra; a configured target without it stops the start with one
  line naming the extra. Apprise does its own HTTP (it is a library with its
  own transports); it runs in a worker thread.
* :class:`WebhookNotifier` POSTs one JSON document per message through the
  shared :class:`~monitor.sources.http.HttpClient`, with
  ``X-Monitor-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>``,
  ``X-Monitor-Timestamp`` (Unix seconds, also ``sent_at`` in the signed body)
  and ``Idempotency-Key`` (also ``idempotency_key`` in the body): a receiver
  checks the signature over the raw body, refuses an old timestamp (replay)
  and drops a key it has seen (a retry).

Neither carries post text or author handles: only what the alert payload holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from monitor import __version__
from monitor.errors import MissingExtra, MonitorError, NotifyError
from monitor.notify.base import Event, Notification, Notifier
from monitor.notify.log import format_line
from monitor.notify.settings import AppriseTarget, WebhookTarget
from monitor.sources.http import HttpClient
from monitor.sources.settings import HttpSettings

__all__ = ["AppriseNotifier", "WebhookNotifier", "message_text", "sign", "webhook_body"]

log = logging.getLogger("monitor.notify")

SIGNATURE_HEADER = "X-Monitor-Signature"
TIMESTAMP_HEADER = "X-Monitor-Timestamp"
KEY_HEADER = "Idempotency-Key"
_URL = re.compile(r"\S+://\S+")


def _headline(event: Event) -> str:
    state = "FIRING (repeat)" if event.kind == "repeat" else event.state.upper()
    tag = f" #{event.tag}" if event.tag else ""
    return f"{state} {event.rule}{tag}"


def message_text(notification: Notification) -> tuple[str, str]:
    """(title, body) in plain text: one line per alert, its summary and numbers."""
    if notification.is_notice:
        count = len(notification.suppressed)
        title = f"[hashtag-monitor] {count} more alert{'' if count == 1 else 's'} suppressed"
        body = (f"The hourly cap of {notification.cap} messages was reached; these were not "
                "sent:\n" + "\n".join(f"- {_headline(e)}" for e in notification.suppressed))
        return title, body
    events = notification.events
    if len(events) == 1:
        title = f"[hashtag-monitor] {_headline(events[0])}"
    else:
        states = sorted({e.state.upper() for e in events})
        rules = sorted({e.rule for e in events})
        title = (f"[hashtag-monitor] {'/'.join(states)} {len(events)} alerts: "
                 f"{', '.join(rules)}")
    lines = []
    for event in events:
        summary = str(event.payload.get("summary") or "").replace("\n", " ")[:300]
        lines.append(f"{_headline(event)}: {summary}" if summary else _headline(event))
        lines.append(f"  {format_line(event, notification.key).split(': ', 1)[0]}")
    return title, "\n".join(lines)


def _event_json(event: Event) -> dict[str, Any]:
    return {"kind": event.kind, "state": event.state, "rule": event.rule,
            "labels": dict(event.labels), "outbox_key": event.idempotency_key,
            "created_at": event.created_at.isoformat(), "payload": dict(event.payload)}


def webhook_body(notification: Notification, sent_at: datetime) -> bytes:
    """The signed document: compact JSON, keys sorted (the bytes the signature covers)."""
    doc = {
        "version": 1,
        "source": f"hashtag-monitor/{__version__}",
        "idempotency_key": notification.key,
        "sent_at": sent_at.isoformat(timespec="seconds"),
        "type": "suppressed" if notification.is_notice else "alerts",
        "group": dict(notification.group),
        "alerts": [_event_json(e) for e in notification.events],
        "suppressed": [_event_json(e) for e in notification.suppressed],
        "hourly_cap": notification.cap or None,
        "attempt": notification.attempt,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str,
                      ensure_ascii=False).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookNotifier(Notifier):
    """One signed JSON POST per message (see the module docstring for the headers)."""

    def __init__(self, target: WebhookTarget, http: HttpSettings) -> None:
        super().__init__(name=f"webhook:{target.name}", grouped=True,
                         rules=frozenset(target.rules), tags=frozenset(target.tags))
        self.target = target
        # the outbox retries with its own backoff: one attempt per send here
        self._settings = http.model_copy(update={"timeout": target.timeout})
        self._http: HttpClient | None = None

    async def send(self, notification: Notification) -> None:
        if self._http is None:
            self._http = HttpClient(self._settings)
        now = datetime.now(UTC).replace(microsecond=0)
        body = webhook_body(notification, now)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.target.secret, body),
            TIMESTAMP_HEADER: str(int(now.timestamp())),
            KEY_HEADER: notification.key,
        }
        try:
            await self._http.post_content(self.target.url, body, headers=headers,
                                          stream=self.name, max_retries=0)
        except MonitorError as exc:
            raise NotifyError(f"{self.name}: {exc}") from None
        except Exception as exc:  # a transport error httpx raises as it is
            raise NotifyError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        raise MissingExtra("notify.apprise", "apprise", "apprise") from None
    return apprise


class AppriseNotifier(Notifier):
    """Sends each message to every URL of one Apprise target."""

    def __init__(self, target: AppriseTarget) -> None:
        super().__init__(name=f"apprise:{target.name}", grouped=True,
                         rules=frozenset(target.rules), tags=frozenset(target.tags))
        self.target = target
        apprise = _apprise()  # at build time: a missing extra stops the start in one line
        self._apprise = apprise
        self._app = apprise.Apprise()
        for index, url in enumerate(target.urls):
            if not self._app.add(url):
                # never echo the URL: it usually carries a token
                raise NotifyError(f"notify.apprise[{target.name}].urls[{index}]: Apprise does "
                                  f"not understand this URL (scheme {url.split(':')[0]!r})")

    async def send(self, notification: Notification) -> None:
        title, body = message_text(notification)
        firing = any(e.state == "firing" for e in notification.members)
        kind = self._apprise.NotifyType.FAILURE if firing else self._apprise.NotifyType.SUCCESS
        started = time.monotonic()
        ok, problem = await asyncio.to_thread(self._notify, title, body, kind)
        if not ok:
            raise NotifyError(f"{self.name}: delivery failed"
                              f"{': ' + problem if problem else ''}")
        log.debug("%s: sent %s in %.2fs", self.name, notification.key[:12],
                  time.monotonic() - started)

    def _notify(self, title: str, body: str, kind: Any) -> tuple[bool, str]:
        # Apprise reports failures through its logger; keep the first line as the reason
        with self._apprise.LogCapture(level=logging.WARNING) as captured:
            ok = bool(self._app.notify(title=title, body=body, notify_type=kind,
                                       body_format=self._apprise.NotifyFormat.TEXT))
            lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        # its messages may quote a URL, and a URL carries the token: never log one
        reason = _URL.sub("<url>", lines[0].strip()) if lines else ""
        return ok, reason[:200]
