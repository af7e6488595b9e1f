"""MQTT against the Mosquitto on loopback with a real aiomqtt subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import Engine, insert

from monitor.config import parse_config
from monitor.errors import NotifyError
from monitor.notify.mqtt import MqttNotifier, MqttPublisher, publish_tag_states
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from monitor.notify.settings import MqttSettings
from monitor.store.schema import alerts
from tests.notify.conftest import NOW, add_outbox, delivery_rows, free_port, payload, store_posts

pytestmark = pytest.mark.mqtt


@pytest.fixture
def prefix() -> str:
    return f"hm-test-{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def subscriber(host: str, port: int, topic: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(host, port, identifier=f"sub-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(topic, qos=1)
        yield client


async def collect(client: aiomqtt.Client, n: int, timeout: float = 10.0) -> list[aiomqtt.Message]:
    out: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            out.append(message)
            if len(out) >= n:
                break
    return out


async def clear_retained(host: str, port: int, topics: list[str]) -> None:
    async with aiomqtt.Client(host, port) as client:
        for topic in topics:
            await client.publish(topic, b"", qos=1, retain=True)


def _config(host: str, port: int, prefix: str) -> Any:
    return parse_config({"hashtags": ["metoo", "notallmen"], "notify": {
        "log": {"enabled": False},
        "mqtt": {"enabled": True, "host": host, "port": port, "prefix": prefix},
    }}, env={})


async def test_alert_events_are_published_as_json_with_the_idempotency_key(
    engine: Engine, mqtt_broker: tuple[str, int], prefix: str
) -> None:
    host, port = mqtt_broker
    config = _config(host, port, prefix)
    dispatcher = Dispatcher(engine, config, build_notifiers(config, engine))
    add_outbox(engine, payload())
    add_outbox(engine, payload(state="resolved", resolved_at=NOW + timedelta(minutes=30)),
               kind="resolved", created_at=NOW + timedelta(minutes=30))
    async with subscriber(host, port, f"{prefix}/alerts/#") as sub:
        # no group_wait for machines: both events go out in the first pass
        assert await dispatcher.run_once(NOW + timedelta(minutes=31)) == 2
        messages = await collect(sub, 2)
    await dispatcher.notifiers[0].aclose()
    assert [m.topic.value for m in messages] == [f"{prefix}/alerts/metoo-spike/metoo"] * 2
    assert all(m.qos == 1 and not m.retain for m in messages)
    firing, resolved = (json.loads(bytes(m.payload)) for m in messages)  # type: ignore[arg-type]
    assert firing["event"] == "firing" and firing["state"] == "firing"
    assert firing["labels"] == {"tag": "metoo", "source": "mastodon"}
    assert firing["value"] == 4.2 and firing["fingerprint"] == "metoo-spike|tag=metoo"
    assert resolved["event"] == "resolved"
    assert resolved["resolved_at"].startswith("2026-11-26T12:30")
    keys = {r.notifier: r for r in delivery_rows(engine)}
    assert set(keys) == {"mqtt"}
    assert len({firing["idempotency_key"], resolved["idempotency_key"]}) == 2
    assert all(len(p["idempotency_key"]) == 40 for p in (firing, resolved))


async def test_retained_tag_state_reaches_a_late_subscriber(
    engine: Engine, mqtt_broker: tuple[str, int], prefix: str
) -> None:
    host, port = mqtt_broker
    store_posts(engine, days=1)
    with engine.begin() as conn:
        conn.execute(insert(alerts).values(
            fingerprint="metoo-spike|tag=metoo", rule="metoo-spike", labels={"tag": "metoo"},
            state="firing", active_since=NOW - timedelta(minutes=40), value=4.2,
            summary="#metoo volume 4.2x usual", annotations={}))
    publisher = MqttPublisher(MqttSettings(enabled=True, host=host, port=port, prefix=prefix))
    assert await publish_tag_states(publisher, engine, _config(host, port, prefix), NOW) == 2
    await publisher.close()
    topics = [f"{prefix}/tags/metoo/state", f"{prefix}/tags/notallmen/state"]
    try:
        # a subscriber that connects afterwards still gets the current state
        async with subscriber(host, port, f"{prefix}/tags/+/state") as sub:
            messages = await collect(sub, 2)
    finally:
        await clear_retained(host, port, topics)
    states = {m.topic.value: json.loads(bytes(m.payload)) for m in messages}  # type: ignore[arg-type]
    assert all(m.retain for m in messages)
    metoo = states[topics[0]]
    # the last complete hour 11:00–12:00 holds the 60-post spike; the last bucket 11:55 has 5
    assert metoo["posts_last_hour"] == 60 and metoo["posts_last_bucket"] == 5
    assert metoo["mean_sentiment_last_hour"] == pytest.approx(-0.05)
    assert [a["rule"] for a in metoo["firing"]] == ["metoo-spike"]
    assert states[topics[1]]["posts_last_hour"] == 0 and states[topics[1]]["firing"] == []


_PUBLISHER = """
import asyncio, sys
from monitor.notify.mqtt import MqttPublisher
from monitor.notify.settings import MqttSettings

async def main() -> None:
    p = MqttPublisher(MqttSettings(enabled=True, host=sys.argv[1], port=int(sys.argv[2]),
                                   prefix=sys.argv[3], keepalive=5))
    await p.connect()
    print("ready", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_process_is_killed(
    mqtt_broker: tuple[str, int], prefix: str
) -> None:
    host, port = mqtt_broker
    status = f"{prefix}/status"
    proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER, host, str(port), prefix],
                            stdout=subprocess.PIPE, cwd=os.getcwd())
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.strip() == b"ready"
        async with subscriber(host, port, status) as sub:
            [online] = await collect(sub, 1)
            assert online.payload == b"online" and online.retain
            os.kill(proc.pid, signal.SIGKILL)  # no clean disconnect, no goodbye
            [offline] = await collect(sub, 1, timeout=15)
        assert offline.payload == b"offline"
        # retained: whoever looks later also sees the service is gone
        async with subscriber(host, port, status) as late:
            [seen] = await collect(late, 1)
        assert seen.payload == b"offline" and seen.retain
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        await clear_retained(host, port, [status])


class _Proxy:
    """A TCP forwarder to the broker that can be cut, to play a broker outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.close()
            await self._server.wait_closed()
            self._server = None
            self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_broker_outage_is_retried_and_delivered_once(
    engine: Engine, mqtt_broker: tuple[str, int], prefix: str
) -> None:
    proxy = _Proxy(mqtt_broker)
    await proxy.start()
    config = _config("127.0.0.1", proxy.port, prefix)
    [notifier] = build_notifiers(config, engine)
    assert isinstance(notifier, MqttNotifier)
    dispatcher = Dispatcher(engine, config, [notifier])
    async with subscriber(*mqtt_broker, f"{prefix}/alerts/#") as sub:
        await notifier.start()
        await proxy.stop()  # the broker "goes away" with the connection open
        add_outbox(engine, payload())
        assert await dispatcher.run_once(NOW) == 0
        [row] = delivery_rows(engine)
        assert row.delivered_at is None and "mqtt" in row.last_error
        # reconnects are spaced out: an immediate retry does not hammer the broker
        with pytest.raises(NotifyError, match="next reconnect in"):
            await notifier.publisher.connect()
        await proxy.start()
        await asyncio.sleep(1.1)  # past the first reconnect backoff
        assert await dispatcher.run_once(NOW + timedelta(minutes=10)) == 1
        [message] = await collect(sub, 1)
        assert json.loads(bytes(message.payload))["rule"] == "metoo-spike"  # type: ignore[arg-type]
        assert await dispatcher.run_once(NOW + timedelta(minutes=20)) == 0
        await notifier.aclose()
    await proxy.stop()
