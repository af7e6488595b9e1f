"""An alert explains itself on every surface: stored annotations, email, MQTT.

The alert comes from the real engine (a sentiment shift seeded in the store),
so what is checked is what a reader would get, not a hand-written payload.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from monitor.config import parse_config
from monitor.detect.engine import evaluate
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from monitor.store.schema import alerts, outbox
from tests.detect.synth import BUCKET, seed_buckets
from tests.notify.conftest import NOW, SmtpServer, make_config
from tests.notify.test_mqtt import collect, subscriber

RULE = {"name": "tone", "kind": "sentiment_shift", "window": "1h", "baseline": "1d",
        "min_z": 4, "min_scored": 30}


def _seed_and_evaluate(engine: Engine) -> dict[str, Any]:
    day = [(NOW - timedelta(days=1, hours=1) + i * BUCKET, 20) for i in range(288)]
    seed_buckets(engine, "metoo", day, compound=0.4, scored_share=1.0)
    seed_buckets(engine, "metoo", [(NOW - timedelta(hours=1) + i * BUCKET, 20) for i in range(12)],
                 compound=-0.3, scored_share=1.0)
    cfg = parse_config({"hashtags": ["metoo"], "rules": [RULE]}, env={})
    report = evaluate(engine, cfg, NOW)
    assert [o.state for o in report.outcomes] == ["firing"]
    with engine.connect() as conn:
        [row] = conn.execute(select(alerts)).all()
        [box] = conn.execute(select(outbox)).all()
    explanation = row.annotations["explanation"]
    assert box.payload["annotations"]["explanation"] == explanation
    return dict(explanation)


def test_the_stored_alert_carries_observed_expected_window_z_and_parameters(
    engine: Engine,
) -> None:
    e = _seed_and_evaluate(engine)
    assert e["observed"] == -0.3 and e["expected"] == 0.4
    assert "240 scored posts over 1h" in e["observed_what"]
    # the baseline window it came from: the day before the tested hour
    assert e["baseline_from"].startswith("2026-11-25T11:00")
    assert e["baseline_until"].startswith("2026-11-26T11:00")
    assert e["z"] < -4 and 0 <= e["p_value"] < 1e-4
    assert e["params"]["min_z"] == 4 and e["params"]["window"] == "1h"
    assert e["params"]["baseline"] == "1d" and e["params"]["for"] == "0s"


async def test_the_email_shows_the_explanation(engine: Engine, smtp_server: SmtpServer) -> None:
    _seed_and_evaluate(engine)
    config = make_config(smtp_server.port, grouping={"group_wait": "0s"})
    notifiers = build_notifiers(config, engine)
    for n in notifiers:
        if isinstance(n, EmailNotifier):
            n._clock = lambda: NOW
    assert await Dispatcher(engine, config, notifiers, clock=lambda: NOW).run_once(NOW) >= 1
    msg = smtp_server.messages[0]
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    for body in (text, html):
        assert "Observed" in body and "-0.3 (mean compound of 240 scored posts over 1h)" in body
        assert "Expected" in body and "from 2026-11-25 11:00 to 2026-11-26 11:00 UTC" in body
        assert "z = -" in body and "tail probability" in body
        assert "min_z=4" in body and "baseline=1d" in body
    assert "explanation:" not in text  # shown as lines, not as a raw dict


async def test_the_mqtt_payload_carries_the_explanation(
    engine: Engine, mqtt_broker: tuple[str, int]
) -> None:
    e = _seed_and_evaluate(engine)
    host, port = mqtt_broker
    prefix = f"hm-test-explain-{id(engine)}"
    config = parse_config({"hashtags": ["metoo"], "notify": {
        "log": {"enabled": False},
        "mqtt": {"enabled": True, "host": host, "port": port, "prefix": prefix}}}, env={})
    dispatcher = Dispatcher(engine, config, build_notifiers(config, engine), clock=lambda: NOW)
    async with subscriber(host, port, f"{prefix}/alerts/#") as sub:
        assert await dispatcher.run_once(NOW) == 1
        [message] = await collect(sub, 1)
    await dispatcher.notifiers[0].aclose()
    body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
    assert body["annotations"]["explanation"] == e
    assert {"observed", "expected", "baseline_from", "baseline_until", "z", "p_value",
            "params"} <= set(body["annotations"]["explanation"])
