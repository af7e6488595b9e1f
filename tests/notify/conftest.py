"""Notify fixtures: a real SMTP server (aiosmtpd) on loopback, outbox rows, stored posts."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, insert, select

from monitor.config import Config, parse_config
from monitor.models import ScoredPost, Sentiment
from monitor.store.schema import deliveries, outbox
from monitor.store.write import write_batch

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Handler:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)  # set: answer late
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        # "held": the server has the message but the client does not hear back
        while self.hold.is_set() and not self.release.is_set():
            await asyncio.sleep(0.02)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = _Handler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self.handler.release.set()
            self._controller.stop()
            self._controller = None
            self.handler.release.clear()

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def make_config(smtp_port: int | None = None, **notify: Any) -> Config:
    """A Config with email to two fixed recipients (or none) and given notify overrides."""
    data: dict[str, Any] = {"hashtags": ["metoo", "notallmen"], "notify": dict(notify)}
    privacy = data["notify"].pop("privacy", None)
    if privacy is not None:
        data["privacy"] = privacy
    if smtp_port is not None:
        mail = data["notify"].setdefault("email", {})
        mail.setdefault("enabled", True)
        mail.setdefault("smtp", {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                                 "timeout": "5s"})
        mail.setdefault("recipients", ["newsroom@example.org"])
        mail.setdefault("sender", "Hashtag Monitor <alerts@example.org>")
    data["notify"].setdefault("log", {"enabled": False})
    return parse_config(data, env={})


def payload(tag: str = "metoo", rule: str = "metoo-spike", *, state: str = "firing",
            kind: str = "spike", value: float = 4.2, baseline: float | None = 1.0,
            threshold: float | None = 3.0, since: datetime | None = None,
            resolved_at: datetime | None = None, summary: str | None = None) -> dict[str, Any]:
    since = since or NOW - timedelta(minutes=40)
    return {
        "fingerprint": f"{rule}|tag={tag}",
        "rule": rule,
        "kind": kind,
        "labels": {"tag": tag, "source": "mastodon"},
        "state": state,
        "summary": summary if summary is not None else f"#{tag} volume {value:.1f}x usual",
        "value": value,
        "threshold": threshold,
        "baseline": baseline,
        "active_since": since.isoformat(),
        "fired_at": (since + timedelta(minutes=10)).isoformat(),
        "resolved_at": resolved_at.isoformat() if resolved_at else None,
        "annotations": {"window": "1h"},
    }


def add_outbox(engine: Engine, body: dict[str, Any], *, kind: str = "firing",
               created_at: datetime = NOW, key: str | None = None) -> int:
    key = key or hashlib.sha256(
        f"{body['fingerprint']}|{kind}|{body['fired_at']}|{created_at}".encode()
    ).hexdigest()[:40]
    with engine.begin() as conn:
        result = conn.execute(insert(outbox).values(
            idempotency_key=key, kind=kind, payload=body, created_at=created_at))
        return int(result.inserted_primary_key[0])


def add_many(engine: Engine, bodies: list[dict[str, Any]], *, created_at: datetime = NOW) -> None:
    rows = [{
        "idempotency_key": hashlib.sha256(f"{b['fingerprint']}|{i}".encode()).hexdigest()[:40],
        "kind": "firing", "payload": b, "created_at": created_at,
    } for i, b in enumerate(bodies)]
    with engine.begin() as conn:
        conn.execute(insert(outbox), rows)


def delivery_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(deliveries).order_by(deliveries.c.outbox_id)))


def open_outbox(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(outbox.c.id).where(outbox.c.done_at.is_(None))).all())


def store_posts(engine: Engine, *, tag: str = "metoo", now: datetime = NOW, days: int = 3,
                per_hour: int = 3, spike: int = 60, extra: list[ScoredPost] | None = None) -> None:
    """*days* of steady posts for *tag* with a spike in the last hour (real write path)."""
    out: list[ScoredPost] = []
    start = now - timedelta(days=days)
    hours = days * 24
    for h in range(hours):
        count = spike if h >= hours - 1 else per_hour
        for i in range(count):
            ts = start + timedelta(hours=h, seconds=(i * 3600) // max(count, 1))
            second = "howiwillchange" if i % 3 == 0 else "timesup"
            out.append(ScoredPost(
                platform="mastodon", key=f"https://example.social/{tag}/{h}/{i}",
                created_at=ts, url=f"https://example.social/@a/{h}{i}", author=None,
                text=f"post {h}/{i} about #{tag}", lang="en", tags=(tag, second),
                is_repost=False, sensitive=False,
                sentiment=Sentiment(compound=-0.3 if i % 2 else 0.2, pos=0.1, neu=0.8, neg=0.1),
            ))
    out.extend(extra or [])
    write_batch(engine, out, now=now)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem)."""
    import subprocess

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)
