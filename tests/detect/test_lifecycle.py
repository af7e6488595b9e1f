"""The alert lifecycle as a pure state machine with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.detect.lifecycle import AlertState, Timing, step

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
TIMING = Timing(for_=10 * M, repeat_interval=60 * M, resolve_after=15 * M)


def run(
    conditions: list[tuple[int, bool]], timing: Timing = TIMING, muted: set[int] | None = None
) -> tuple[AlertState, list[tuple[int, str]]]:
    state = AlertState()
    said: list[tuple[int, str]] = []
    for minute, cond in conditions:
        state, ann = step(state, cond, T0 + minute * M, timing,
                          muted=minute in (muted or set()))
        if ann:
            said.append((minute, ann))
    return state, said


def test_pending_until_for_has_elapsed_then_fires_once() -> None:
    state, said = run([(m, True) for m in range(0, 30, 5)])
    assert said == [(10, "firing")]
    assert state.state == "firing" and state.fired_at == T0 + 10 * M
    assert state.active_since == T0


def test_a_blip_shorter_than_for_never_fires() -> None:
    state, said = run([(0, True), (5, True), (6, False), (20, False)])
    assert said == [] and state.state == "inactive"


def test_repeat_no_sooner_than_repeat_interval() -> None:
    _, said = run([(m, True) for m in range(0, 200, 5)])
    assert said == [(10, "firing"), (70, "repeat"), (130, "repeat"), (190, "repeat")]


def test_resolves_after_resolve_after_and_says_so_once() -> None:
    conds = [(0, True), (10, True), (15, False), (25, False), (30, False), (40, False)]
    state, said = run(conds)
    assert said == [(10, "firing"), (25, "resolved")]  # false since 10, quiet 15 min at 25
    assert state.state == "resolved" and state.resolved_at == T0 + 25 * M


def test_condition_returning_before_resolve_after_keeps_it_firing_silently() -> None:
    state, said = run([(0, True), (10, True), (15, False), (20, True), (30, False)])
    assert said == [(10, "firing")] and state.state == "firing"


def test_a_silenced_alert_keeps_its_state_and_is_announced_when_the_silence_ends() -> None:
    conds = [(m, True) for m in range(0, 40, 5)]
    state, said = run(conds, muted={0, 5, 10, 15, 20})
    assert said == [(25, "firing")]
    assert state.state == "firing" and state.fired_at == T0 + 10 * M


def test_an_alert_silenced_for_its_whole_life_announces_nothing_not_even_resolved() -> None:
    conds = [(0, True), (10, True), (20, False), (40, False)]
    state, said = run(conds, muted={0, 10, 20, 40})
    assert said == [] and state.state == "resolved"


def test_evaluating_the_same_instant_twice_changes_nothing() -> None:
    state, ann = step(AlertState(), True, T0, Timing())
    assert ann == "firing"
    again, ann2 = step(state, True, T0, Timing())
    assert again == state and ann2 is None
    older, ann3 = step(state, False, T0 - M, Timing())
    assert older == state and ann3 is None


def test_a_flare_within_rearm_after_is_a_repeat_not_a_new_page() -> None:
    timing = Timing(resolve_after=15 * M, repeat_interval=1000 * M, rearm_after=120 * M)
    conds = [(0, True), (5, False), (20, False), (60, True), (65, False), (80, False),
             (200, True)]
    _, said = run(conds, timing)
    assert said == [(0, "firing"), (20, "resolved"), (60, "repeat"), (80, "resolved"),
                    (200, "firing")]
