"""What a notifier is sent when: the pure planning step, over plain records and a clock value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.notify.base import Event, notification_key
from monitor.notify.planning import Policy, Queued, plan

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EMAIL = "email:desk@example.org"


def queued(n: int, *, rule: str = "spike", tag: str | None = None,
           created_at: datetime = NOW - timedelta(minutes=10), attempts: int = 0,
           next_attempt_at: datetime | None = None, delivered_at: datetime | None = None,
           claim_key: str | None = None, claim_notice: bool = False) -> Queued:
    event = Event(outbox_id=n, idempotency_key=f"k{n}", kind="firing",
                  payload={"rule": rule, "labels": {"tag": tag or f"tag{n}"}},
                  created_at=created_at)
    due = next_attempt_at if next_attempt_at is not None else (
        None if delivered_at else created_at)
    return Queued(event, attempts, due, delivered_at, claim_key, claim_notice)


def test_over_the_cap_the_last_message_is_a_notice_holding_every_other_group() -> None:
    pending = [queued(i, rule=f"rule{i}") for i in range(5)]
    out = plan(EMAIL, grouped=True, pending=pending, recent=[], policy=Policy(cap=3), now=NOW)
    assert [n.is_notice for n in out] == [False, False, True]
    assert [e.outbox_id for e in out[2].suppressed] == [2, 3, 4]
    assert out[2].cap == 3


def test_messages_of_the_last_hour_and_open_claims_use_up_the_cap() -> None:
    recent = [queued(10 + i, rule="old", delivered_at=NOW - timedelta(minutes=20 + i))
              for i in range(2)]
    # a send that failed and waits for its backoff: not re-sent now, but it holds a slot
    waiting = queued(20, rule="failing", attempts=1, next_attempt_at=NOW + timedelta(minutes=1),
                     claim_key="c" * 40)
    fresh = [queued(i, rule=f"rule{i}") for i in range(3)]
    out = plan(EMAIL, grouped=True, pending=[waiting, *fresh], recent=recent,
               policy=Policy(cap=5), now=NOW)
    # 5 an hour - 2 sent - 1 claimed = 2: one group, then the notice for the other two
    assert [n.key for n in out] == [notification_key(EMAIL, ["k0"]),
                                    notification_key(EMAIL, ["k1", "k2"], notice=True)]


def test_a_claimed_notification_goes_again_with_its_key_and_members() -> None:
    key = "d" * 40
    pending = [queued(1, claim_key=key, attempts=2, claim_notice=True),
               queued(2, claim_key=key, attempts=2, claim_notice=True)]
    [again] = plan(EMAIL, grouped=True, pending=pending, recent=[], policy=Policy(), now=NOW)
    assert again.key == key and again.is_notice and again.attempt == 3
    assert [e.outbox_id for e in again.suppressed] == [1, 2]


def test_a_group_waits_group_interval_after_its_last_message() -> None:
    policy = Policy(group_wait=timedelta(seconds=30), group_interval=timedelta(minutes=5))
    recent = [queued(1, tag="metoo", delivered_at=NOW - timedelta(minutes=2))]
    pending = [queued(2, tag="notallmen", created_at=NOW - timedelta(minutes=1))]
    assert plan(EMAIL, grouped=True, pending=pending, recent=recent, policy=policy,
                now=NOW) == []
    [later] = plan(EMAIL, grouped=True, pending=pending, recent=recent, policy=policy,
                   now=NOW + timedelta(minutes=3))
    assert [e.outbox_id for e in later.events] == [2] and later.group == (("rule", "spike"),)


def test_an_ungrouped_notifier_gets_each_due_alert_at_once() -> None:
    pending = [queued(i, created_at=NOW) for i in range(3)]
    pending.append(queued(9, next_attempt_at=NOW + timedelta(seconds=5)))  # backing off
    out = plan("log", grouped=False, pending=pending, recent=[], policy=Policy(cap=2), now=NOW)
    assert [[e.outbox_id for e in n.events] for n in out] == [[0], [1], [2]]
