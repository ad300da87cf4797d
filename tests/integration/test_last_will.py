"""An MQTT device's last will takes its twin offline: a real paho client with a will drops its
connection, Mosquitto publishes the will, `twinflow bridge mqtt` → Kafka → `twinflow run twin` →
the twin's state says offline with the reason; its next reading brings it back online."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from tests.process_helpers import start_twinflow, stop, wait_for_log
from tests.twin_fixtures import delete_topics, settings_env, twin_db, twin_settings_for  # noqa: F401
from tests.twin_kafka import wait_for
from twinflow.cli.twin import load_state
from twinflow.settings import Settings

pytestmark = pytest.mark.integration


def _device(s: Settings, uid: str, topic: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"device-{uid}")
    client.will_set(topic, orjson.dumps({"readings": {"online": False}}), qos=1)
    client.connect(s.mqtt.host, s.mqtt.port, keepalive=30)
    client.loop_start()
    return client


def test_a_last_will_takes_the_twin_offline_and_a_reading_brings_it_back(
    twin_db: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    uid = uuid.uuid4().hex[:8]
    s = twin_settings_for(twin_db)
    twin, prefix = f"lw-{uid}", f"lw{uid}"
    topic = f"{prefix}/{twin}/telemetry"
    env = {
        **os.environ,
        **settings_env(s),
        "TWINFLOW_MQTT__TOPIC": f"{prefix}/+/telemetry",
        "TWINFLOW_MQTT__CLIENT_ID": f"bridge-{uid}",
    }
    log = open(tmp_path / "procs.log", "wb")  # noqa: SIM115 (closed below)
    bridge = start_twinflow(["bridge", "mqtt"], env, log)
    flow = start_twinflow(["run", "twin", "--no-recovery"], env, log)
    try:
        wait_for_log(tmp_path / "procs.log", b"subscribed", bridge)
        device = _device(s, uid, topic)
        device.publish(topic, orjson.dumps({"readings": {"speed": 100.0}}), qos=1).wait_for_publish(10)
        wait_for("the twin online", lambda: (load_state(s, twin) or {}).get("status") == "synchronized", timeout=90)

        device.loop_stop()
        device.socket().close()  # the connection drops without DISCONNECT: the broker sends the will

        def offline() -> dict | None:
            row = load_state(s, twin)
            return row if row and row["status"] == "offline" else None

        row = wait_for("the will to take the twin offline", offline, timeout=60)
        assert row["connectivity"]["state"] == "offline"
        assert row["connectivity"]["reason"].startswith("mqtt reported online = false")
        assert row["reported"]["online"]["value"] is False and row["reported"]["speed"]["value"] == 100.0

        again = _device(s, uid, topic)
        again.publish(topic, orjson.dumps({"readings": {"speed": 101.0, "online": True}}), qos=1).wait_for_publish(10)
        row = wait_for("the twin back online", lambda: (load_state(s, twin) or {}).get("status") == "synchronized")
        assert load_state(s, twin)["connectivity"]["state"] == "online"
        again.disconnect()
        again.loop_stop()
    finally:
        stop(bridge)
        stop(flow)
        log.close()
        delete_topics(s)
