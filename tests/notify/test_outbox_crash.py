"""A dispatcher that dies between claim and send (or between send and mark), and the one
that takes over: no email is lost, none closes silently (clustertest finding 6).

The multi-process test once ended with an outbox row closed (``done_at`` set) while
its email delivery had ``claim_key`` set but neither ``delivered_at`` nor
``next_attempt_at``, and no warning in any log. A row folded into another
notification always carries that notification's key and is marked delivered with
it; a give-up always says so in ``last_error``. A row in that state was therefore
neither sent nor given up: these tests pin down that the takeover path delivers it,
and that such a row is sent again (with one WARNING line) instead of being counted
as given up.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from monitor.notify.email import EmailNotifier, message_id
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from monitor.store import outbox as store
from monitor.store.schema import deliveries
from tests.notify.conftest import (
    NOW,
    SmtpServer,
    add_outbox,
    delivery_rows,
    make_config,
    open_outbox,
    payload,
)

# the multi-process test's grouping: one group per (rule, tag)
GROUPING = {"group_by": ["rule", "tag"], "group_wait": "0.5s", "group_interval": "1s"}
EMAIL = "email:newsroom@example.org"


def _dispatcher(engine: Engine, port: int, **notify: Any) -> Dispatcher:
    config = make_config(port, grouping=GROUPING, **notify)
    notifiers = build_notifiers(config, engine)
    for n in notifiers:
        if isinstance(n, EmailNotifier):
            n._clock = lambda: NOW
    return Dispatcher(engine, config, notifiers, clock=lambda: NOW)


def _email_rows(engine: Engine) -> list[Any]:
    return [r for r in delivery_rows(engine) if r.notifier == EMAIL]


def _claim_and_die(dispatcher: Dispatcher, at: datetime) -> list[str]:
    """What a dispatcher killed right after committing its claims leaves: claims, no send."""
    store.route(dispatcher.engine, dispatcher._accepting)
    [email] = [n for n in dispatcher.notifiers if isinstance(n, EmailNotifier)]
    due = dispatcher._plan(email, at)
    for notification in due:
        store.claim(dispatcher.engine, email.name, [e.outbox_id for e in notification.members],
                    key=notification.key, notice=notification.is_notice)
    return [n.key for n in due]


async def test_killed_between_claim_and_send_the_next_dispatcher_sends_it(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    # the finding's shape: two alerts of one group, the first already mailed on its own
    first = _dispatcher(engine, smtp_server.port)
    add_outbox(engine, payload(tag="ididit", rule="quiet-ididit"))
    assert await first.run_once(NOW + timedelta(seconds=1)) == 1
    add_outbox(engine, payload(tag="ididit", rule="quiet-ididit", since=NOW),
               created_at=NOW + timedelta(seconds=2))
    # the second one's email is claimed, then the process is killed (SIGKILL: no send)
    [key] = _claim_and_die(first, NOW + timedelta(seconds=3))
    assert len(smtp_server.messages) == 1

    # another process takes the role over: the claim is sent under the same key
    second = _dispatcher(engine, smtp_server.port)
    assert await second.run_once(NOW + timedelta(seconds=4)) == 1
    assert await second.run_once(NOW + timedelta(minutes=5)) == 0
    assert [m["Message-ID"] for m in smtp_server.messages][1] == message_id(key)
    rows = _email_rows(engine)
    assert [r.delivered_at is not None for r in rows] == [True, True]
    assert rows[1].claim_key == key and rows[1].attempts == 2
    assert open_outbox(engine) == 0


async def test_killed_between_send_and_mark_the_copy_has_the_same_message_id(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    first = _dispatcher(engine, smtp_server.port)
    add_outbox(engine, payload(tag="ididit", rule="quiet-ididit"))
    [key] = _claim_and_die(first, NOW + timedelta(seconds=1))
    [email] = [n for n in first.notifiers if isinstance(n, EmailNotifier)]
    [notification] = [n for n in first._plan(email, NOW + timedelta(seconds=1))]
    assert notification.key == key  # the plan resumes the claim, members unchanged
    await email.send(notification)  # sent; the process dies before marking it

    second = _dispatcher(engine, smtp_server.port)
    assert await second.run_once(NOW + timedelta(seconds=2)) == 1
    # at-least-once: the copy carries the same Message-ID, so the receiver drops it
    assert [m["Message-ID"] for m in smtp_server.messages] == [message_id(key)] * 2
    assert open_outbox(engine) == 0


async def test_a_claimed_row_neither_sent_nor_given_up_is_sent_not_closed(
    engine: Engine, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The state of finding 6: claim_key set, no delivered_at, no next_attempt_at, no
    recorded give-up. Counting it as given up closed the outbox row with no email and
    no log line; now it is made due again, with one WARNING, and sent."""
    first = _dispatcher(engine, smtp_server.port)
    row = add_outbox(engine, payload(tag="ididit", rule="quiet-ididit"))
    [key] = _claim_and_die(first, NOW + timedelta(seconds=1))
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.outbox_id == row)
                     .values(next_attempt_at=None))

    second = _dispatcher(engine, smtp_server.port)
    with caplog.at_level(logging.WARNING, logger="monitor.notify"):
        await second.run_once(NOW + timedelta(seconds=2))  # mqtt/log off: only email
        assert open_outbox(engine) == 1  # not closed: nothing was sent
        assert await second.run_once(NOW + timedelta(seconds=3)) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"notify: {EMAIL} had neither delivered nor given up outbox row "
                        f"{row} (1 attempt); sending it again"]
    assert [m["Message-ID"] for m in smtp_server.messages] == [message_id(key)]
    [email_row] = _email_rows(engine)
    assert email_row.delivered_at is not None
    assert open_outbox(engine) == 0


async def test_a_give_up_logs_one_warning_even_if_the_process_died_after_it(
    engine: Engine, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    first = _dispatcher(engine, smtp_server.port)
    row = add_outbox(engine, payload(tag="ididit", rule="quiet-ididit"))
    _claim_and_die(first, NOW + timedelta(seconds=1))
    # the give-up is committed; the process is killed before it logs anything
    store.mark_failed(engine, EMAIL, [row], retry_at=None,
                      error="gave up after 9 attempts: email via smtp://127.0.0.1:1: refused")
    second = _dispatcher(engine, smtp_server.port)
    with caplog.at_level(logging.WARNING, logger="monitor.notify"):
        assert await second.run_once(NOW + timedelta(seconds=2)) == 0
        assert await second.run_once(NOW + timedelta(seconds=3)) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"notify: outbox row {row} closed without {EMAIL} delivering it: "
                        "gave up after 9 attempts: email via smtp://127.0.0.1:1: refused"]
    assert smtp_server.messages == []
    assert open_outbox(engine) == 0


async def test_a_give_up_in_the_same_process_is_one_warning(
    engine: Engine, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.stop()
    add_outbox(engine, payload())
    dispatcher = _dispatcher(engine, smtp_server.port, retry={"give_up_after": "1h"})
    with caplog.at_level(logging.WARNING, logger="monitor.notify"):
        await dispatcher.run_once(NOW + timedelta(hours=2))
        await dispatcher.run_once(NOW + timedelta(hours=3))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"notify: {EMAIL} could not deliver ")
    assert warnings[0].endswith("; giving up")
    assert open_outbox(engine) == 0
