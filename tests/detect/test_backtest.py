"""`monitor backtest`: the replay fires where the live rules would, and writes nothing."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from monitor.cli import app
from monitor.commands import register_all
from monitor.config import Config, parse_config
from monitor.detect.backtest import backtest, naive_replay
from monitor.store.db import make_engine, migrate
from monitor.store.schema import alerts, outbox

from .synth import BUCKET, START, seasonal_counts, seed_buckets, seed_posts

SPIKE = {"name": "spike", "kind": "spike", "resolve_after": "1h"}
TONE = {"name": "tone", "kind": "sentiment_shift", "window": "1h", "baseline": "1d",
        "min_z": 4, "min_scored": 20, "for": "10m", "resolve_after": "30m"}
COTAG = {"name": "cotag", "kind": "emerging_cotag", "window": "1h", "baseline": "12h",
         "min_posts": 5, "min_z": 4}


def config(*rules: dict[str, Any]) -> Config:
    return parse_config({"hashtags": ["metoo"], "rules": list(rules)}, env={})


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(alerts)).scalar_one(),
                conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def _episodes(result: Any) -> list[tuple[str, tuple[tuple[str, str], ...], Any, Any]]:
    return [(a.rule, tuple(sorted(a.labels.items())), a.fired_at, a.resolved_at)
            for a in result.alerts]


def test_backtest_fires_on_a_seeded_surge_and_is_quiet_on_a_stationary_series(
    engine: Engine,
) -> None:
    counts = seasonal_counts(21, seed=11)
    surge_at = START + timedelta(days=18, hours=14)
    surged = [(at, n * 8 if surge_at <= at < surge_at + timedelta(hours=2) else n)
              for at, n in counts]
    seed_buckets(engine, "metoo", surged)
    seed_buckets(engine, "calm", counts)
    cfg = parse_config({"hashtags": ["metoo", "calm"], "rules": [SPIKE]}, env={})
    result = backtest(engine, cfg, START + timedelta(days=14), START + timedelta(days=21))
    fired = [(a.tag, a.fired_at) for a in result.alerts]
    assert [t for t, _ in fired] == ["metoo"], fired
    assert surge_at <= fired[0][1] <= surge_at + timedelta(minutes=30)
    summary = {r["tag"]: r for r in result.summary()}
    assert summary["metoo"]["alerts"] == 1 and summary["calm"]["alerts"] == 0
    assert summary["metoo"]["per_week"] == 1.0
    assert result.alerts[0].explanation["expected"] is not None
    assert _counts(engine) == (0, 0)  # nothing stored, nothing queued


def test_streaming_replay_gives_the_same_alerts_as_evaluating_every_instant(
    engine: Engine,
) -> None:
    counts = seasonal_counts(3, seed=3, base=10)
    spike_at = START + timedelta(days=2, hours=9)
    seed_buckets(engine, "metoo", [
        (at, n * 10 if spike_at <= at < spike_at + timedelta(hours=1) else n) for at, n in counts])
    rng = random.Random(5)
    shift_at = START + timedelta(days=2, hours=6)
    tone_rows = []
    for i in range(3 * 288):
        at = START + i * BUCKET
        tone = -0.4 if shift_at <= at < shift_at + timedelta(hours=2) else 0.3 + rng.gauss(0, 0.1)
        tone_rows.append((at, tone))
    for at, tone in tone_rows:  # a second tag carries the tone (buckets are one row per tag)
        seed_buckets(engine, "tone", [(at, 4)], compound=round(tone, 4), scored_share=1.0)
    posts: list[tuple[Any, list[str]]] = []
    for i in range(3 * 24 * 4):  # one #metoo post every 15 minutes
        at = START + i * timedelta(minutes=15)
        tags = ["metoo"] + ([rng.choice(["news", "cats"])] if rng.random() < 0.1 else [])
        posts.append((at, tags))
    burst = START + timedelta(days=2, hours=11)
    posts += [(burst + timedelta(minutes=m), ["metoo", "newthing"]) for m in range(0, 120, 5)]
    seed_posts(engine, posts, "bt")
    cfg = parse_config({"hashtags": ["metoo", "tone"], "rules": [SPIKE, TONE, COTAG]}, env={})
    # nine hours around the three events: the naive replay re-reads everything per instant
    since, until = START + timedelta(days=2, hours=5), START + timedelta(days=2, hours=14)
    fast = backtest(engine, cfg, since, until)
    slow = naive_replay(engine, cfg, since, until)
    assert _episodes(fast) == _episodes(slow)
    assert [(a.announcements, a.summary) for a in fast.alerts] == [
        (a.announcements, a.summary) for a in slow.alerts]
    fired = {(a.rule, a.labels.get("cotag", a.tag)) for a in fast.alerts}
    assert {("spike", "metoo"), ("tone", "tone"), ("cotag", "newthing")} <= fired


def test_backtest_command_lists_episodes_and_the_weekly_summary(tmp_path: Path) -> None:
    register_all()
    db = tmp_path / "m.db"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: sqlite:///{db}\nhashtags: [metoo]\nrules:\n"
        "  - name: tone\n    kind: sentiment_shift\n    window: 1h\n    baseline: 1d\n"
        "    min_z: 4\n    min_scored: 30\n"
        "  - name: dead\n    kind: flatline\n", encoding="utf-8")
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    seed_buckets(engine, "metoo", [(START + i * BUCKET, 20) for i in range(288)],
                 compound=0.4, scored_share=1.0)
    seed_buckets(engine, "metoo", [(START + timedelta(days=1) + i * BUCKET, 20)
                                   for i in range(24)], compound=-0.4, scored_share=1.0)
    engine.dispose()
    until = (START + timedelta(days=1, hours=6)).isoformat()
    runner = CliRunner()
    result = runner.invoke(app, ["backtest", "--since", "1d", "--until", until, "--format",
                                 "json", "--config", str(path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    [episode] = out["alerts"]
    assert episode["rule"] == "tone" and episode["labels"] == "tag=metoo"
    assert episode["fired"] == "2026-01-06 00:05 UTC" and episode["resolved"] != "still firing"
    assert "z=" in episode["why"] and episode["explanation"]["params"]["min_z"] == 4
    assert out["summary"] == [{"rule": "tone", "tag": "metoo", "alerts": 1, "pages": 1,
                               "per_week": 7.0, "firing_hours": out["summary"][0]["firing_hours"]}]
    assert "flatline" in out["skipped"]["dead"]
    table = runner.invoke(app, ["backtest", "--since", "1d", "--until", until, "--config",
                                str(path)])
    assert table.exit_code == 0 and "per rule and tag" in table.output
    bad = runner.invoke(app, ["backtest", "--rule", "nope", "--config", str(path)])
    assert bad.exit_code == 2 and "no rule named 'nope'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
