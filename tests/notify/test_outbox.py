"""The dispatcher against a real SMTP server: grouping, hourly cap, retries, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Dispatcher, pending_deliveries, retry_schedule
from monitor.notify.registry import build_notifiers
from monitor.store.db import make_engine, migrate
from tests.notify.conftest import (
    NOW,
    SmtpServer,
    add_many,
    add_outbox,
    delivery_rows,
    make_config,
    open_outbox,
    payload,
)


def _dispatcher(engine: Engine, port: int, **notify: Any) -> Dispatcher:
    config = make_config(port, **notify)
    notifiers = build_notifiers(config, engine)
    for n in notifiers:
        if isinstance(n, EmailNotifier):
            n._clock = lambda: NOW
    return Dispatcher(engine, config, notifiers, clock=lambda: NOW)


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_restart_between_send_and_mark_resends_with_the_same_message_id(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    add_outbox(engine, payload())
    first = _dispatcher(engine, smtp_server.port, grouping={"group_wait": "0s"})
    # the server takes the message but the process dies before hearing "250"
    smtp_server.handler.hold.set()
    task = asyncio.create_task(first.run_once(NOW))
    await _until(lambda: len(smtp_server.messages) == 1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    smtp_server.handler.hold.clear()
    # while it was down another alert of the same group arrived
    add_outbox(engine, payload(tag="notallmen"), created_at=NOW + timedelta(seconds=30))

    restarted = _dispatcher(engine, smtp_server.port, grouping={"group_wait": "0s"})
    assert await restarted.run_once(NOW + timedelta(minutes=1)) == 1
    crashed, resent = smtp_server.messages
    # the re-send is recognisably the same message: same Message-ID, same content
    assert resent["Message-ID"] == crashed["Message-ID"]
    assert resent["Subject"] == crashed["Subject"]
    assert crashed["Subject"] == "[FIRING] #metoo volume 4.2x usual (0 posts/h)"
    # the newer alert was not folded in (that would change the message); it follows
    # once group_interval (5 m) has passed since the re-send
    assert await restarted.run_once(NOW + timedelta(minutes=3)) == 0
    assert await restarted.run_once(NOW + timedelta(minutes=7)) == 1
    assert [m["Subject"].split("]")[0] for m in smtp_server.messages] == ["[FIRING"] * 3
    assert "#notallmen" in smtp_server.messages[2]["Subject"]
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 2
    assert await restarted.run_once(NOW + timedelta(hours=2)) == 0
    assert open_outbox(engine) == 0


async def test_smtp_down_for_an_hour_loses_nothing_and_sends_once(
    engine: Engine, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.stop()
    add_outbox(engine, payload())
    dispatcher = _dispatcher(engine, smtp_server.port, grouping={"group_wait": "0s"})
    # a dead server sees one attempt per backoff step (15 s first), not one per poll
    for second in range(11):
        await dispatcher.run_once(NOW + timedelta(seconds=second))
    [row] = delivery_rows(engine)
    assert row.attempts == 1
    t = NOW + timedelta(seconds=11)
    with caplog.at_level(logging.WARNING, logger="monitor.notify"):
        for _ in range(12):  # an hour of 5-minute passes with the server down
            assert await dispatcher.run_once(t) == 0
            t += timedelta(minutes=5)
    [row] = delivery_rows(engine)
    assert row.delivered_at is None and row.attempts >= 6
    assert "cannot connect" in row.last_error
    assert f"smtp://127.0.0.1:{smtp_server.port}" in caplog.text
    [pending] = pending_deliveries(engine)
    assert pending.notifier == "email:newsroom@example.org" and pending.tag == "metoo"

    smtp_server.start()
    # backoff is capped at retry.max (10 m): delivered within that after the server is back
    assert await dispatcher.run_once(t + timedelta(minutes=10)) == 1
    assert await dispatcher.run_once(t + timedelta(minutes=20)) == 0
    assert len(smtp_server.messages) == 1
    assert open_outbox(engine) == 0
    assert pending_deliveries(engine) == []


async def test_gives_up_after_the_configured_age(engine: Engine, smtp_server: SmtpServer) -> None:
    smtp_server.stop()
    add_outbox(engine, payload())
    dispatcher = _dispatcher(engine, smtp_server.port, grouping={"group_wait": "0s"},
                             retry={"give_up_after": "1h"})
    await dispatcher.run_once(NOW)
    assert open_outbox(engine) == 1
    await dispatcher.run_once(NOW + timedelta(hours=2))
    [row] = delivery_rows(engine)
    assert row.delivered_at is None and row.next_attempt_at is None
    assert "gave up after 2 attempts" in row.last_error
    assert open_outbox(engine) == 0  # closed: it will not be retried forever


async def test_500_alerts_at_once_send_a_handful_of_emails(engine: Engine,
                                                           smtp_server: SmtpServer) -> None:
    bodies = [payload(tag=f"tag{i}", rule=rule) for i in range(250)
              for rule in ("volume-spike", "mood-shift")]
    add_many(engine, bodies)
    # one group per (rule, tag): 500 groups, but at most 10 emails an hour
    dispatcher = _dispatcher(engine, smtp_server.port,
                             grouping={"group_by": ["rule", "tag"], "group_wait": "30s"},
                             max_per_recipient_per_hour=10)
    assert await dispatcher.run_once(NOW + timedelta(seconds=10)) == 0  # group_wait
    assert await dispatcher.run_once(NOW + timedelta(seconds=31)) == 10
    messages = smtp_server.messages
    assert len(messages) == 10
    subjects = [m["Subject"] for m in messages]
    assert sum(s.startswith("[FIRING]") for s in subjects) == 9
    assert subjects[-1] == "[SUPPRESSED] 491 more alerts held back (limit 10 emails/hour)"
    notice = messages[-1].get_body(preferencelist=("plain",))
    assert notice is not None
    assert "mood-shift: 246 (#tag4, #tag5" in notice.get_content()
    assert "volume-spike: 245 (#tag5, #tag6" in notice.get_content()
    # every alert is accounted for: nothing left waiting, nothing sent later
    assert await dispatcher.run_once(NOW + timedelta(hours=3)) == 0
    assert len(smtp_server.messages) == 10
    assert open_outbox(engine) == 0


async def test_burst_of_related_alerts_is_one_email_per_group(engine: Engine,
                                                              smtp_server: SmtpServer) -> None:
    add_many(engine, [payload(tag=f"tag{i}", rule=rule) for i in range(250)
                      for rule in ("volume-spike", "mood-shift")])
    dispatcher = _dispatcher(engine, smtp_server.port)  # group_by: [rule]
    assert await dispatcher.run_once(NOW + timedelta(minutes=1)) == 2
    subjects = sorted(m["Subject"] for m in smtp_server.messages)
    assert subjects == [
        "[FIRING:250] mood-shift: #tag0, #tag1, #tag2, #tag3 +246 more",
        "[FIRING:250] volume-spike: #tag0, #tag1, #tag2, #tag3 +246 more",
    ]
    body = smtp_server.messages[0].get_body(preferencelist=("plain",))
    assert body is not None and "…and 200 more alerts in this group" in body.get_content()


async def test_group_interval_batches_later_alerts_of_a_group(engine: Engine,
                                                              smtp_server: SmtpServer) -> None:
    dispatcher = _dispatcher(engine, smtp_server.port,
                             grouping={"group_wait": "30s", "group_interval": "5m"})
    add_outbox(engine, payload(tag="metoo"))
    assert await dispatcher.run_once(NOW + timedelta(seconds=31)) == 1
    for minute in (1, 2, 3):
        add_outbox(engine, payload(tag=f"t{minute}"), created_at=NOW + timedelta(minutes=minute))
    assert await dispatcher.run_once(NOW + timedelta(minutes=4)) == 0
    assert await dispatcher.run_once(NOW + timedelta(minutes=5, seconds=32)) == 1
    assert smtp_server.messages[1]["Subject"] == "[FIRING:3] metoo-spike: #t1, #t2, #t3"


async def test_each_notifier_and_recipient_is_tracked_separately(
    engine: Engine, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = _dispatcher(engine, smtp_server.port, log={"enabled": True}, email={
        "enabled": True,
        "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "security": "none"},
        "recipients": ["all@example.org", {"address": "nam@example.org", "tags": ["notallmen"]}],
    })
    add_outbox(engine, payload(tag="metoo"))
    add_outbox(engine, payload(tag="notallmen", rule="nam-spike"))
    with caplog.at_level(logging.INFO, logger="monitor.alerts"):
        # the log notifier does not wait for group_wait; email does
        assert await dispatcher.run_once(NOW) == 2
    assert len(smtp_server.messages) == 0
    assert [r.getMessage().split(" value=")[0] for r in caplog.records] == [
        "alert FIRING metoo-spike #metoo", "alert FIRING nam-spike #notallmen"]
    assert await dispatcher.run_once(NOW + timedelta(minutes=1)) == 3
    by_rcpt: dict[str, list[str]] = {}
    for m in smtp_server.messages:
        by_rcpt.setdefault(m["To"], []).append(m["Subject"])
    assert sorted(by_rcpt["all@example.org"]) == [
        "[FIRING] #metoo volume 4.2x usual (0 posts/h)",
        "[FIRING] #notallmen volume 4.2x usual (0 posts/h)"]
    assert by_rcpt["nam@example.org"] == ["[FIRING] #notallmen volume 4.2x usual (0 posts/h)"]
    notifiers = {(r.outbox_id, r.notifier) for r in delivery_rows(engine)}
    assert len(notifiers) == 5  # 2 log + 2 all@ + 1 nam@
    assert open_outbox(engine) == 0


async def test_a_notification_in_flight_across_the_0004_upgrade_keeps_its_message_id(
    db_url: str, smtp_server: SmtpServer
) -> None:
    # a 0003 database where a send was cut short: the key lived in last_error then
    engine = make_engine(db_url)
    migrate(engine, "0003_tag_pairs")
    outbox_id = add_outbox(engine, payload())
    key = "ab" * 20
    old_deliveries = sa.table(
        "deliveries", sa.column("outbox_id", sa.Integer), sa.column("notifier", sa.String),
        sa.column("attempts", sa.Integer), sa.column("next_attempt_at", sa.DateTime(True)),
        sa.column("last_error", sa.Text))
    with engine.begin() as conn:
        conn.execute(old_deliveries.insert().values(
            outbox_id=outbox_id, notifier="email:newsroom@example.org", attempts=1,
            next_attempt_at=NOW, last_error=f"[{key}] sending"))
    migrate(engine)

    dispatcher = _dispatcher(engine, smtp_server.port, grouping={"group_wait": "0s"})
    assert await dispatcher.run_once(NOW + timedelta(minutes=1)) == 1
    [message] = smtp_server.messages
    assert key in message["Message-ID"]  # the receiver can drop it if the first got through
    [row] = delivery_rows(engine)
    assert row.delivered_at is not None and row.claim_key == key and row.attempts == 2
    assert open_outbox(engine) == 0
    engine.dispose()


def test_retry_waits_start_at_initial_and_never_exceed_max() -> None:
    # the shared equal-jitter backoff, read the way notify.retry is documented
    retry = make_config(None, retry={"initial": "15s", "max": "10m"}).notify.retry
    schedule = retry_schedule(retry)
    for _ in range(200):
        assert 15 <= schedule.delay_after(1) <= 30
        assert 30 <= schedule.delay_after(2) <= 60
        assert 300 <= schedule.delay_after(12) <= 600
