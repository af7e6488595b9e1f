"""Grouped emails are threaded: the firing and the resolved notices of one group carry
the same References and In-Reply-To, through a real SMTP server on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from tests.notify.conftest import NOW, SmtpServer, add_outbox, make_config, payload

TAGS = ("metoo", "notallmen", "timesup")


def _dispatcher(engine: Engine, port: int, group_by: list[str]) -> Dispatcher:
    config = make_config(port, grouping={"group_by": group_by, "group_wait": "0s",
                                         "group_interval": "1m"})
    notifiers = build_notifiers(config, engine)
    for n in notifiers:
        if isinstance(n, EmailNotifier):
            n._clock = lambda: NOW
    return Dispatcher(engine, config, notifiers, clock=lambda: NOW)


@pytest.mark.parametrize("group_by", [["rule"], ["rule", "state"]])
async def test_a_groups_firing_and_resolved_emails_share_one_thread(
    engine: Engine, smtp_server: SmtpServer, group_by: list[str]
) -> None:
    dispatcher = _dispatcher(engine, smtp_server.port, group_by)
    for tag in TAGS:
        add_outbox(engine, payload(tag=tag, rule="collector-silent", kind="flatline"))
    # another rule: another group, another thread
    add_outbox(engine, payload(tag="metoo", rule="metoo-spike"))
    assert await dispatcher.run_once(NOW) == 2
    later = NOW + timedelta(hours=1)
    for tag in TAGS:
        add_outbox(engine, payload(tag=tag, rule="collector-silent", kind="flatline",
                                   state="resolved", resolved_at=later - timedelta(minutes=2),
                                   summary=f"#{tag} collecting again"),
                   kind="resolved", created_at=later - timedelta(minutes=1))
    assert await dispatcher.run_once(later) == 1
    by_subject = {m["Subject"]: m for m in smtp_server.messages}
    firing = next(m for s, m in by_subject.items() if s.startswith("[FIRING:3]"))
    resolved = next(m for s, m in by_subject.items() if s.startswith("[RESOLVED:3]"))
    spike = next(m for s, m in by_subject.items() if "metoo-spike" in s or "4.2x" in s)
    assert firing["References"] is not None
    assert resolved["References"] == firing["References"]
    assert resolved["In-Reply-To"] == firing["In-Reply-To"] == firing["References"]
    assert spike["References"] != firing["References"]
    assert len({firing["Message-ID"], resolved["Message-ID"], spike["Message-ID"]}) == 3
