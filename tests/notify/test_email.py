"""Email through a real SMTP server on loopback, parsed with the ``email`` package."""

from __future__ import annotations

import re
import ssl
from datetime import timedelta
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.models import ScoredPost, Sentiment
from monitor.notify.chart import SPARK_CHARS
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from tests.notify.conftest import (
    NOW,
    SmtpServer,
    add_outbox,
    delivery_rows,
    make_config,
    payload,
    store_posts,
)

SCRIPT_POST = ScoredPost(
    platform="mastodon", key="https://example.social/evil", created_at=NOW - timedelta(seconds=10),
    url="https://example.social/@x/1", author=None,
    text='<script>alert("x")</script> <b>bold</b> #metoo', lang="en", tags=("metoo",),
    is_repost=False, sensitive=False, sentiment=Sentiment(0.0, 0.0, 1.0, 0.0),
)


def _dispatcher(engine: Engine, port: int, **notify: object) -> Dispatcher:
    config = make_config(port, **notify)
    notifiers = build_notifiers(config, engine)
    for n in notifiers:
        if isinstance(n, EmailNotifier):
            n._clock = lambda: NOW
    return Dispatcher(engine, config, notifiers, clock=lambda: NOW)


def _parts(msg: EmailMessage) -> tuple[str, str, EmailMessage]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content(), html


async def test_firing_email_has_subject_parts_chart_and_escaped_examples(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    store_posts(engine, extra=[SCRIPT_POST])
    add_outbox(engine, payload())
    dispatcher = _dispatcher(engine, smtp_server.port,
                             grouping={"group_wait": "0s"},
                             privacy={"store_text": True, "example_posts_in_alerts": True})

    assert await dispatcher.run_once(NOW) == 1
    [msg] = smtp_server.messages
    # the inbox line a person triages from: state, tag, ratio and volume
    assert msg["Subject"] == "[FIRING] #metoo volume 4.2x usual (61 posts/h)"
    assert msg["To"] == "newsroom@example.org"
    assert re.fullmatch(r"<[0-9a-f]{40}@hashtag-monitor>", msg["Message-ID"])
    assert msg["Auto-Submitted"] == "auto-generated"

    text, html, html_part = _parts(msg)
    assert "Active since 2026-11-26 11:20 UTC (for 40m)" in text
    assert "Ratio to usual: 4.2x" in text
    assert "Last hour: 61 posts" in text
    # the sparkline ends at its peak: the spike in the last hour
    spark = next(line.strip() for line in text.splitlines()
                 if line.strip() and set(line.strip()) <= set(SPARK_CHARS))
    assert spark[-1] == SPARK_CHARS[-1] and len(spark) >= 24
    assert "#howiwillchange" in text and "#timesup" in text

    # inline chart: a PNG part whose Content-ID the HTML references
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1
    cid = images[0]["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html
    png = images[0].get_content()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    assert html_part.get_content_type() == "text/html"

    # a post cannot inject markup: escaped in HTML, verbatim (harmless) in text
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert '<script>alert("x")</script>' in text
    assert 'href="https://example.social/@x/1"' in html


async def test_no_example_posts_unless_privacy_allows(engine: Engine,
                                                      smtp_server: SmtpServer) -> None:
    store_posts(engine, extra=[SCRIPT_POST])
    add_outbox(engine, payload())
    # text is stored, but quoting it in alerts is not allowed
    dispatcher = _dispatcher(engine, smtp_server.port, grouping={"group_wait": "0s"},
                             privacy={"store_text": True, "example_posts_in_alerts": False})
    await dispatcher.run_once(NOW)
    [msg] = smtp_server.messages
    text, html, _ = _parts(msg)
    for body in (text, html):
        assert "script" not in body and "post 71/" not in body
        assert "Example posts" not in body


async def test_resolved_notice_threads_with_the_firing_email(engine: Engine,
                                                             smtp_server: SmtpServer) -> None:
    store_posts(engine)
    add_outbox(engine, payload())
    dispatcher = _dispatcher(engine, smtp_server.port, grouping={"group_wait": "0s",
                                                                 "group_interval": "1m"})
    await dispatcher.run_once(NOW)
    later = NOW + timedelta(hours=2)
    add_outbox(engine, payload(state="resolved", resolved_at=later - timedelta(minutes=1),
                               summary="#metoo volume back to usual"),
               kind="resolved", created_at=later - timedelta(minutes=1))
    assert await dispatcher.run_once(later) == 1
    firing, resolved = smtp_server.messages
    assert resolved["Subject"].startswith("[RESOLVED] #metoo volume back to usual")
    text, _, _ = _parts(resolved)
    assert "Resolved at 2026-11-26 13:59 UTC (lasted 2h 39m)" in text
    # same References header: mail clients thread the two
    assert resolved["References"] == firing["References"] is not None
    assert resolved["Message-ID"] != firing["Message-ID"]


async def test_daily_digest_per_recipient(engine: Engine, smtp_server: SmtpServer) -> None:
    store_posts(engine, days=9)
    store_posts(engine, tag="notallmen", days=2, per_hour=1, spike=1)
    dispatcher = _dispatcher(engine, smtp_server.port, email={
        "enabled": True,
        "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "security": "none"},
        "recipients": [{"address": "a@example.org"},
                       {"address": "b@example.org", "tags": ["notallmen"]},
                       {"address": "c@example.org", "digest": False}],
        "digest": {"enabled": True, "hour_utc": 7},
    })
    assert await dispatcher.run_once(NOW) == 2
    assert await dispatcher.run_once(NOW + timedelta(hours=1)) == 0  # once a day
    by_rcpt = {m["To"]: m for m in smtp_server.messages}
    assert set(by_rcpt) == {"a@example.org", "b@example.org"}
    text_a, _, _ = _parts(by_rcpt["a@example.org"])
    # 24 h: 23 h × 3 + 60 in the spike hour; a week earlier: 24 × 3
    assert "#metoo\n  Posts: 129 (same day last week: 72, +79%)" in text_a
    assert "#notallmen" in text_a
    text_b, _, _ = _parts(by_rcpt["b@example.org"])
    assert "#notallmen" in text_b and "#metoo" not in text_b
    assert by_rcpt["a@example.org"]["Subject"].startswith("[DIGEST] 2026-11-26: #metoo 129")


def _auth(server: object, session: object, envelope: object, mechanism: str,
          auth_data: object) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"monitor", b"s3cret-from-env")
    return AuthResult(success=ok, handled=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_and_login_with_the_password_from_the_environment(
    engine: Engine, tls_cert: tuple[str, str], security: str
) -> None:
    cert, key = tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer()
    tls_args: dict[str, object] = (
        {"tls_context": context, "require_starttls": True} if security == "starttls"
        # implicit TLS: aiosmtpd does not see the wrapped socket as TLS, so allow AUTH
        else {"ssl_context": context, "auth_require_tls": False}
    )
    controller = Controller(server.handler, hostname="127.0.0.1", port=server.port,
                            authenticator=_auth, auth_required=True, **tls_args)
    controller.start()
    try:
        # the secret comes from the environment through ${VAR} in the config file
        config = parse_config({"notify": {"log": {"enabled": False}, "email": {
            "enabled": True, "recipients": ["desk@example.org"],
            "smtp": {"host": "127.0.0.1", "port": server.port, "security": security,
                     "username": "monitor", "password": "${SMTP_PASSWORD}", "ca_file": cert},
        }}}, env={"SMTP_PASSWORD": "s3cret-from-env"})
        add_outbox(engine, payload())
        dispatcher = Dispatcher(engine, config, build_notifiers(config, engine))
        assert await dispatcher.run_once(NOW + timedelta(minutes=1)) == 1
        [msg] = server.messages
        assert msg["Subject"].startswith("[FIRING] #metoo")

        # a wrong password is a clear, retried failure, not a crash
        bad = parse_config({"notify": {"log": {"enabled": False}, "email": {
            "enabled": True, "recipients": ["desk@example.org"],
            "smtp": {"host": "127.0.0.1", "port": server.port, "security": security,
                     "username": "monitor", "password": "wrong", "ca_file": cert},
        }}}, env={})
        add_outbox(engine, payload(tag="notallmen", rule="nam-spike"),
                   created_at=NOW + timedelta(minutes=2))
        retry = Dispatcher(engine, bad, build_notifiers(bad, engine))
        assert await retry.run_once(NOW + timedelta(minutes=3)) == 0
        pending = [r for r in delivery_rows(engine) if r.delivered_at is None]
        assert len(pending) == 1 and "login as 'monitor' refused: 535" in pending[0].last_error
    finally:
        controller.stop()


async def test_long_group_subject_arrives_unchanged(engine: Engine,
                                                    smtp_server: SmtpServer) -> None:
    tags = ["howiwillchange", "ididit", "metoo", "notallmen", "timesup"]
    for tag in tags:
        add_outbox(engine, payload(tag=tag, rule="collector-silent"))
    dispatcher = _dispatcher(engine, smtp_server.port)
    assert await dispatcher.run_once(NOW + timedelta(minutes=1)) == 1
    [msg] = smtp_server.messages
    assert msg["Subject"] == (
        "[FIRING:5] collector-silent: #howiwillchange, #ididit, #metoo, #notallmen +1 more")
