"""MQTT: alert events, retained per-tag state and an online/offline status topic.

Topics (``<prefix>`` is ``notify.mqtt.prefix``):

- ``<prefix>/alerts/<rule>/<tag>``: one JSON event per alert transition, QoS 1,
  not retained; the outbox payload plus ``idempotency_key`` for de-duplication.
- ``<prefix>/tags/<tag>/state``: retained JSON, refreshed every bucket by
  :func:`publish_tag_states` (posts, mean sentiment, firing alerts).
- ``<prefix>/status``: retained ``online`` on connect; ``offline`` on a clean
  shutdown, and as the last will when the process dies without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
from sqlalchemy import Engine

from monitor.config import Config
from monitor.errors import NotifyError
from monitor.notify.base import Event, Notification, Notifier
from monitor.notify.settings import MqttSettings
from monitor.store.alerts import recent_alerts
from monitor.store.schema import BUCKET_SECONDS
from monitor.store.windows import window_totals

__all__ = [
    "MqttNotifier",
    "MqttPublisher",
    "alert_topic",
    "event_payload",
    "publish_tag_states",
    "tag_states",
]

log = logging.getLogger("monitor.notify.mqtt")

_UNSAFE = re.compile(r"[/+#\s\x00]+")
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0


def _segment(value: str | None) -> str:
    """A topic level from a label value: no '/', '+', '#' or spaces."""
    return _UNSAFE.sub("_", value or "").strip("_") or "_"


def alert_topic(prefix: str, event: Event) -> str:
    tag = event.tag or event.labels.get("source")
    return f"{prefix}/alerts/{_segment(event.rule)}/{_segment(tag)}"


def event_payload(event: Event, key: str) -> dict[str, Any]:
    """The outbox payload plus the keys a consumer needs to de-duplicate."""
    body = dict(event.payload)
    body["event"] = event.kind  # firing | resolved | repeat
    body["idempotency_key"] = key
    body["outbox_key"] = event.idempotency_key
    return body


class MqttPublisher:
    """One long-lived connection with a last will, reconnecting with backoff.

    :meth:`publish` raises :class:`NotifyError` while the broker is unreachable;
    reconnection is attempted on the next call once the backoff has passed
    (1 s doubling to 60 s), so a caller never hammers a dead broker.
    """

    def __init__(self, settings: MqttSettings, *, identifier: str | None = None) -> None:
        self.settings = settings
        self.identifier = identifier or settings.client_id or (
            f"hashtag-monitor-{socket.gethostname()}-{os.getpid()}"
        )
        self.status_topic = f"{settings.prefix}/status"
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._backoff = BACKOFF_MIN_S
        self._next_try = 0.0

    @property
    def connected(self) -> bool:
        return self._client is not None

    def _new_client(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host, s.port,
            username=s.username or None, password=s.password or None,
            identifier=self.identifier, keepalive=s.keepalive, timeout=10,
            tls_context=ssl.create_default_context() if s.tls else None,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
        )

    async def connect(self) -> None:
        """Connect (if not connected) and announce ``online``; NotifyError on failure."""
        async with self._lock:
            if self._client is not None:
                return
            wait = self._next_try - time.monotonic()
            if wait > 0:
                raise NotifyError(
                    f"mqtt {self.settings.host}:{self.settings.port}: unreachable; "
                    f"next reconnect in {wait:.0f}s"
                )
            client = self._new_client()
            try:
                await client.__aenter__()
                await client.publish(self.status_topic, b"online", qos=1, retain=True)
            except (aiomqtt.MqttError, OSError) as exc:
                self._next_try = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
                await _quiet_exit(client)
                raise NotifyError(
                    f"mqtt {self.settings.host}:{self.settings.port}: cannot connect: {exc}"
                ) from exc
            self._client = client
            self._backoff = BACKOFF_MIN_S
            log.info("mqtt connected to %s:%d as %s", self.settings.host, self.settings.port,
                     self.identifier)

    async def publish(self, topic: str, payload: dict[str, Any] | bytes, *,
                      retain: bool = False, qos: int | None = None) -> None:
        await self.connect()
        client = self._client
        assert client is not None
        data = payload if isinstance(payload, bytes) else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        try:
            await client.publish(topic, data, qos=self.settings.qos if qos is None else qos,
                                 retain=retain, timeout=10)
        except (aiomqtt.MqttError, OSError) as exc:
            await self._drop()
            raise NotifyError(f"mqtt publish to {topic!r} failed: {exc}") from exc

    async def _drop(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            self._next_try = time.monotonic() + self._backoff
        if client is not None:
            await _quiet_exit(client)

    async def close(self) -> None:
        """Announce ``offline`` (retained) and disconnect cleanly."""
        async with self._lock:
            client, self._client = self._client, None
        if client is None:
            return
        # if this fails the broker publishes the will ("offline") instead
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=5)
        await _quiet_exit(client)


async def _quiet_exit(client: aiomqtt.Client) -> None:
    try:
        await client.__aexit__(None, None, None)
    except Exception as exc:  # already broken; nothing left to release
        log.debug("mqtt disconnect: %s", exc)


class MqttNotifier(Notifier):
    """Publishes every alert event on its own (machines want each event at once)."""

    def __init__(self, settings: MqttSettings, *, publisher: MqttPublisher | None = None,
                 name: str = "mqtt") -> None:
        super().__init__(name=name, grouped=False)
        self.settings = settings
        self.publisher = publisher or MqttPublisher(settings)

    async def start(self) -> None:
        await self.publisher.connect()

    async def send(self, notification: Notification) -> None:
        for event in notification.events:
            await self.publisher.publish(alert_topic(self.settings.prefix, event),
                                         event_payload(event, notification.key))

    async def aclose(self) -> None:
        await self.publisher.close()


def tag_states(engine: Engine, config: Config, now: datetime) -> list[dict[str, Any]]:
    """The retained state of every followed tag (and every tag with a firing alert)."""
    bucket = timedelta(seconds=BUCKET_SECONDS)
    epoch = int(now.timestamp())
    current = datetime.fromtimestamp(epoch - epoch % BUCKET_SECONDS, tz=UTC)
    last_full = current - bucket
    hour_ago = current - timedelta(hours=1)
    firing: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:  # one connection for the three reads
        for alert in recent_alerts(conn, ["firing"]):
            tag = alert.labels.get("tag")
            if not tag:
                continue
            firing.setdefault(str(tag), []).append({
                "rule": alert.rule, "fingerprint": alert.fingerprint,
                "since": alert.active_since.isoformat() if alert.active_since else None,
                "value": alert.value, "summary": alert.summary,
            })
        tags = list(dict.fromkeys([*config.hashtags, *sorted(firing)]))
        hour = window_totals(conn, tags, hour_ago, current)
        last = window_totals(conn, tags, last_full, current)
    return [
        {
            "tag": tag,
            "updated_at": now.isoformat(),
            "bucket_start": last_full.isoformat(),
            "bucket_seconds": BUCKET_SECONDS,
            "posts_last_bucket": last[tag].posts,
            "posts_last_hour": hour[tag].posts,
            "scored_last_hour": hour[tag].scored,
            "mean_sentiment_last_hour": hour[tag].mean_compound,
            "firing": firing.get(tag, []),
        }
        for tag in tags
    ]


async def publish_tag_states(publisher: MqttPublisher, engine: Engine, config: Config,
                             now: datetime | None = None) -> int:
    """Publish ``<prefix>/tags/<tag>/state`` (retained) for each tag; returns how many.

    The service calls this once per bucket. Raises NotifyError when the broker
    is down; the next bucket simply tries again (state is not queued: only the
    newest state matters).
    """
    now = now or datetime.now(UTC)
    states = await asyncio.to_thread(tag_states, engine, config, now)
    prefix = publisher.settings.prefix
    for state in states:
        await publisher.publish(f"{prefix}/tags/{_segment(state['tag'])}/state", state,
                                retain=True)
    return len(states)
