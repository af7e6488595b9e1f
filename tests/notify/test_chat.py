"""Apprise and the signed JSON webhook, through the real outbox, to receivers on 127.0.0.1.

The webhook receiver is a real HTTP server; Apprise is pointed at it with its
``json://`` schema (the same library path as Slack, Matrix, Teams, Discord or
Telegram, which are URLs of other schemas).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.errors import ConfigError, MissingExtra
from monitor.notify.chat import AppriseNotifier, WebhookNotifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from monitor.notify.settings import AppriseTarget
from tests.notify.conftest import NOW, add_many, add_outbox, delivery_rows, make_config, payload

SECRET = "s3cret-for-the-webhook-0123456789"


class Receiver:
    """A loopback HTTP server that records every POST and answers *fail* first."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail: list[int] = []  # statuses to answer before succeeding
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.fail.pop(0) if receiver.fail else 204
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def _dispatcher(engine: Engine, **notify: Any) -> Dispatcher:
    config = make_config(None, **notify)
    return Dispatcher(engine, config, build_notifiers(config, engine), clock=lambda: NOW)


def _webhook(port: int, **extra: Any) -> dict[str, Any]:
    return {"name": "cms", "url": f"http://127.0.0.1:{port}/hooks/alerts", "secret": SECRET,
            **extra}


async def test_signed_webhook_groups_and_signs_the_exact_body(engine: Engine,
                                                              receiver: Receiver) -> None:
    add_many(engine, [payload(tag=t) for t in ("metoo", "notallmen", "ididit")])
    dispatcher = _dispatcher(engine, webhooks=[_webhook(receiver.port)])
    assert await dispatcher.run_once(NOW + timedelta(minutes=1)) == 1  # one group: one POST
    ((path, headers, body),) = receiver.requests
    assert path == "/hooks/alerts"
    assert headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Monitor-Signature"], expected)
    doc = json.loads(body)
    assert doc["idempotency_key"] == headers["Idempotency-Key"]
    sent = datetime.fromisoformat(doc["sent_at"])
    assert int(headers["X-Monitor-Timestamp"]) == int(sent.timestamp())
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 60
    assert doc["type"] == "alerts" and doc["group"] == {"rule": "metoo-spike"}
    assert sorted(a["labels"]["tag"] for a in doc["alerts"]) == ["ididit", "metoo", "notallmen"]
    assert {a["state"] for a in doc["alerts"]} == {"firing"}
    # a tampered body does not verify
    assert not hmac.compare_digest(
        expected, "sha256=" + hmac.new(SECRET.encode(), body + b" ", hashlib.sha256).hexdigest())
    assert {r.notifier for r in delivery_rows(engine)} == {"webhook:cms"}
    assert await dispatcher.run_once(NOW + timedelta(hours=1)) == 0  # sent once


async def test_webhook_down_is_retried_with_the_same_idempotency_key(
        engine: Engine, receiver: Receiver) -> None:
    receiver.fail = [503, 500]
    add_outbox(engine, payload(tag="metoo"))
    dispatcher = _dispatcher(engine, webhooks=[_webhook(receiver.port)],
                             retry={"initial": "10s", "max": "1m"})
    await dispatcher.run_once(NOW + timedelta(minutes=1))
    assert len(receiver.requests) == 1
    rows = delivery_rows(engine)
    assert rows[0].delivered_at is None and "HTTP 503" in (rows[0].last_error or "")
    for minute in range(2, 8):
        await dispatcher.run_once(NOW + timedelta(minutes=minute))
    assert len(receiver.requests) == 3  # two failures, then delivered once
    keys = {h["Idempotency-Key"] for _, h, _ in receiver.requests}
    assert len(keys) == 1
    assert delivery_rows(engine)[0].delivered_at is not None


async def test_apprise_json_target_gets_title_and_body(engine: Engine,
                                                       receiver: Receiver) -> None:
    add_many(engine, [payload(tag="metoo", summary="#metoo volume 4.2x usual")])
    dispatcher = _dispatcher(engine, apprise=[{
        "name": "newsroom", "urls": [f"json://127.0.0.1:{receiver.port}/apprise"],
        "tags": ["#MeToo"]}])
    assert await dispatcher.run_once(NOW + timedelta(minutes=1)) == 1
    ((path, _headers, body),) = receiver.requests
    assert path == "/apprise"
    doc = json.loads(body)
    assert doc["title"] == "[hashtag-monitor] FIRING metoo-spike #metoo"
    assert "FIRING metoo-spike #metoo: #metoo volume 4.2x usual" in doc["message"]
    assert doc["type"] == "failure"  # Apprise's type for a firing alert
    assert {r.notifier for r in delivery_rows(engine)} == {"apprise:newsroom"}


async def test_apprise_failure_is_retried_and_names_no_url(engine: Engine,
                                                           receiver: Receiver) -> None:
    receiver.fail = [500]
    add_outbox(engine, payload(tag="notallmen", state="firing"))
    dispatcher = _dispatcher(engine, apprise=[{
        "name": "chat", "urls": [f"json://127.0.0.1:{receiver.port}/token-abc"]}],
        retry={"initial": "10s", "max": "1m"})
    await dispatcher.run_once(NOW + timedelta(minutes=1))
    error = delivery_rows(engine)[0].last_error or ""
    assert "apprise:chat: delivery failed" in error
    assert "token-abc" not in error
    await dispatcher.run_once(NOW + timedelta(minutes=3))
    assert len(receiver.requests) == 2
    assert delivery_rows(engine)[0].delivered_at is not None


def test_only_matching_alerts_reach_a_filtered_target() -> None:
    target = AppriseTarget(name="t", urls=["json://127.0.0.1:9/x"], tags=["#MeToo"],
                           rules=["spike"])
    notifier = AppriseNotifier(target)
    assert notifier.tags == frozenset({"metoo"}) and notifier.rules == frozenset({"spike"})
    assert notifier.grouped


def test_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"notify\.apprise\[0\]\.urls: expected an Apprise URL"):
        make_config(None, apprise=[{"name": "x", "urls": ["hooks.slack.com/abc"]}])
    with pytest.raises(ConfigError, match=r"notify\.webhooks\[0\]\.secret"):
        make_config(None, webhooks=[{"name": "x", "url": "http://127.0.0.1/", "secret": "short"}])
    with pytest.raises(ConfigError, match="expected unique webhooks names, got 'a' twice"):
        make_config(None, webhooks=[_webhook(1, name="a"), _webhook(2, name="a")])


def test_missing_apprise_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise → ImportError
    config = make_config(None, apprise=[{"name": "x", "urls": ["json://127.0.0.1:9/x"]}])
    with pytest.raises(MissingExtra) as caught:
        build_notifiers(config)
    assert str(caught.value) == (
        "notify.apprise needs apprise: pip install 'hashtag-monitor[apprise]'")


def test_both_are_registered() -> None:
    from monitor.notify.registry import NOTIFIERS

    assert {"apprise", "webhook"} <= {kind.name for kind in NOTIFIERS}
    config = make_config(None, webhooks=[_webhook(1)],
                         apprise=[{"name": "n", "urls": ["json://127.0.0.1:9/x"]}])
    kinds = {type(n) for n in build_notifiers(config)}
    assert kinds == {WebhookNotifier, AppriseNotifier}
