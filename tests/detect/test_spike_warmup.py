"""A young tag's spike finding says what it lacks and for how long, not "195m of 1h"."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.detect.engine import evaluate

from .synth import BUCKET, START, seasonal_counts, seed_buckets

AT = START + timedelta(days=3)


def _summary(engine: Engine, min_history: str, minutes: int) -> str:
    counts = seasonal_counts(1, start=AT - timedelta(minutes=minutes))[: minutes // 5]
    seed_buckets(engine, "metoo", counts)
    cfg = parse_config({"hashtags": ["metoo"], "rules": [
        {"name": "metoo-spike", "kind": "spike", "min_history": min_history}]}, env={})
    [outcome] = evaluate(engine, cfg, AT + timedelta(seconds=1)).outcomes
    return outcome.summary


def test_more_than_min_history_but_still_learning_says_what_it_lacks(engine: Engine) -> None:
    # the report: "insufficient history (195m of 1h)" -- 195 minutes is more than an hour
    text = _summary(engine, "1h", 195)
    assert "195m of 1h" not in text
    assert text.startswith("#metoo: insufficient history: has 3h 15m of posts, needs ")
    assert "to learn its usual level and its own noise (min_history 1h); judged in " in text


def test_short_of_min_history_names_it(engine: Engine) -> None:
    text = _summary(engine, "2d", 180)
    assert text == ("#metoo: insufficient history: has 3h of posts, needs 2d (the rule's "
                    "min_history); judged in 1d 21h 5m")


def test_the_time_to_go_is_when_it_is_judged(engine: Engine) -> None:
    counts = seasonal_counts(2, start=AT - timedelta(minutes=195))
    seed_buckets(engine, "metoo", counts)
    cfg = parse_config({"hashtags": ["metoo"], "rules": [
        {"name": "metoo-spike", "kind": "spike", "min_history": "1h"}]}, env={})
    [young] = evaluate(engine, cfg, AT + timedelta(seconds=1)).outcomes
    wait = young.summary.rsplit("judged in ", 1)[1]
    minutes = sum(int(part[:-1]) * {"d": 1440, "h": 60, "m": 1}[part[-1]]
                  for part in wait.split())
    before = AT + timedelta(minutes=minutes) - BUCKET + timedelta(seconds=1)
    [still] = evaluate(engine, cfg, before).outcomes
    assert still.summary.endswith("judged in 5m"), still.summary
    [judged] = evaluate(engine, cfg, AT + timedelta(minutes=minutes, seconds=1)).outcomes
    assert "insufficient history" not in judged.summary, judged.summary
