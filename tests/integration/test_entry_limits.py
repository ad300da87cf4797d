"""Size limits at the MQTT entry point: an oversized payload is dead-lettered by the bridge
(cut to the limit, never dropped, never crashing it), and the bridge keeps forwarding."""

from __future__ import annotations

import threading
import time

import orjson
import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt.bridge import MqttBridge
from tests.dlq_helpers import envelope
from tests.kafka_helpers import read_topic
from twinflow.settings import MqttSettings, SecuritySettings

pytestmark = pytest.mark.integration


def test_oversized_mqtt_payload_goes_to_dlq_and_bridge_keeps_running(settings, unique):
    limit = 4096
    s = settings.model_copy(
        update={
            "mqtt": MqttSettings(
                host=settings.mqtt.host,
                port=settings.mqtt.port,
                topic=f"lim{unique}/+/telemetry",
                client_id=f"bridge-lim-{unique}",
            ),
            "security": SecuritySettings(max_mqtt_payload_bytes=limit),
        }
    )
    twin = f"lim-{unique}"
    bridge = MqttBridge(s)
    subscribed = threading.Event()
    bridge.client.on_subscribe = lambda *_args: subscribed.set()
    bridge.start()
    try:
        assert subscribed.wait(20), "bridge did not subscribe on Mosquitto"
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{unique}")
        pub.connect(s.mqtt.host, s.mqtt.port)
        pub.loop_start()
        big = b'{"pad":"' + b"x" * 20_000 + b'"}'
        topic = f"lim{unique}/{twin}/telemetry"
        for payload in (big, orjson.dumps(envelope(twin, 1)), big, orjson.dumps(envelope(twin, 2))):
            pub.publish(topic, payload, qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 30
        while bridge.publisher.stats()["delivered"] < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        bridge.stop()
    assert bridge.counters.produced == 4 and bridge.counters.failed == 0
    dead = read_topic(s, s.topics.dlq)
    assert len(dead) == 2
    for rec in dead:
        assert rec.headers["dlq.reason"] == b"too_large"
        assert rec.headers["dlq.topic"].decode() == topic
        assert int(rec.headers["dlq.truncated_from"]) == len(big)
        assert rec.value == big[:limit] and rec.key == twin.encode()
    raw = read_topic(s, s.topics.raw)
    assert sorted(orjson.loads(r.value)["seq"] for r in raw) == [1, 2]
