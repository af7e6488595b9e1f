"""Helpers of tests/cluster/test_multiprocess.py: the MQTT subscriber that counts alert
messages, the delivery check, and what a fake instance saw before it answered 429."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from email.message import EmailMessage
from typing import Any

import paho.mqtt.client as mqtt

from monitor.notify.email import message_id
from tests.fakes.mastodon_many import ManyMastodon

__all__ = ["Broker", "around_refusal", "check_sent"]


class Broker:
    """A subscriber on the Mosquitto: every alert message under *prefix* as received."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"cltest-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/alerts/#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("could not subscribe to the broker")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def around_refusal(fake: ManyMastodon, port: int) -> str:
    """The requests to *port* in the second before its first 429: who sent each, and the
    gap to the one before (to tell two processes apart from one process's late sends)."""
    hits = [h for h in fake.hits(timelines_only=False) if h.port == port]
    first = next(i for i, h in enumerate(hits) if h.status == 429)
    shown = [h for h in hits[:first + 1] if h.at >= hits[first].at - 1.0]
    rows = [f"+{h.at - shown[0].at:.3f}s {h.client.split('(')[-1][:24]} {h.status}"
            for h in shown]
    return f"{port}: " + ", ".join(rows)


def check_sent(rows: list[Any], sent: list[Any], broker: list[dict[str, Any]],
               emails: list[EmailMessage], dispatcher_kills: int) -> None:
    """Every outbox row reached the broker and every recorded email the catcher, each
    exactly once, but for the one window the dispatcher documents
    (monitor/notify/outbox.py: at least once; a crash between the send and the mark
    re-sends the *same* notification under the *same* key, for the receiver to drop).
    So a second copy passes only if it is identical to the first, and there are no
    more second copies than kills of the process that held the dispatcher role.
    """
    assert rows, "no alert was raised"
    by_notifier: dict[str, list[Any]] = {}
    for row in sent:
        by_notifier.setdefault(row.notifier, []).append(row)
    assert set(by_notifier) == {"email:desk@example.org", "mqtt"}, set(by_notifier)
    received = sorted(str(m["Message-ID"]) for m in emails)
    for name, delivered in by_notifier.items():
        assert len(delivered) == len(rows) and all(r.delivered_at for r in delivered), (
            name, rows, delivered, received)
    # MQTT: one message per outbox row (a re-sent one: the same payload)
    per_row = Counter(m["outbox_key"] for m in broker)
    assert set(per_row) == {r.idempotency_key for r in rows}, per_row
    copies = {k: {json.dumps(m, sort_keys=True) for m in broker if m["outbox_key"] == k}
              for k, n in per_row.items() if n > 1}
    assert all(len(v) == 1 for v in copies.values()), f"different messages, one key: {copies}"
    # email: grouped; every notification the dispatcher recorded arrived (a re-sent one:
    # the same subject and text under the same Message-ID)
    ids = Counter(str(m["Message-ID"]) for m in emails)
    recorded = {message_id(r.claim_key) for r in by_notifier["email:desk@example.org"]}
    assert set(ids) == recorded, (sorted(set(ids) ^ recorded)[:4])
    twice = {k: n for k, n in ids.items() if n > 1}
    for key in twice:
        versions = {(str(m["Subject"]), _text(m)) for m in emails if str(m["Message-ID"]) == key}
        assert len(versions) == 1, f"different emails under one Message-ID {key}"
    extra = sum(n - 1 for n in per_row.values()) + sum(n - 1 for n in twice.values())
    mqtt_twice = {k: n for k, n in per_row.items() if n > 1}
    assert extra <= dispatcher_kills, (
        f"sent twice without a dispatcher crash between (kills of its holder: "
        f"{dispatcher_kills}): emails {twice}, mqtt {mqtt_twice}")


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return "" if body is None else str(body.get_content())
