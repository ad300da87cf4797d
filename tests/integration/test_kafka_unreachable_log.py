"""A long-running process says once that Kafka is unreachable, and once that it is back.

librdkafka logs every connection attempt (about a hundred lines in five seconds with Kafka down);
the bridges', flows' and server's clients log through connectors.kafka.broker_log instead. Here a
bridge and a flow start with ``kafka.bootstrap_servers`` at a port where nothing listens; after a
few seconds a relay to the real broker opens on that port.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.plant_helpers import free_port, settings_of
from tests.process_helpers import Background
from tests.tcp_relay import Relay
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration


def test_an_unreachable_broker_is_one_line_and_its_return_another(stack_settings: Settings, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    port = free_port()
    topics = topic_env(stack_settings, f"it.unreach.{uid}.")
    settings_of(topics)  # the topics of its own exist (dropped at the end of the session)
    env = {
        **os.environ,
        **topics,
        "TWINFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
        "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp_path / "buffer"),
        "TWINFLOW_MQTT__TOPIC": f"it/unreach/{uid}/+/telemetry",
        "TWINFLOW_MQTT__CLIENT_ID": f"it-unreach-{uid}",
    }
    commands = {
        "bridge": Background(["bridge", "mqtt"], env, tmp_path / "bridge.log"),
        "flow": Background(["run", "telemetry", "--no-recovery"], env, tmp_path / "flow.log"),
    }
    try:
        for bg in commands.values():
            bg.wait_for("Kafka is unreachable", timeout=60)
        time.sleep(5.0)  # librdkafka retries (about 100 lines in 5 s without the summary)
        for name, bg in commands.items():
            out = bg.output()
            assert out.count("Kafka is unreachable") == 1, f"{name}:\n{out[-3000:]}"
            assert f"127.0.0.1:{port}" in out and "kafka.bootstrap_servers" in out
            assert out.count("Connection refused") <= 1, f"{name}:\n{out[-3000:]}"  # the summary's reason only
            assert len(out.splitlines()) < 15, f"{name}:\n{out[-3000:]}"
        relay = Relay(_kafka_port(stack_settings), port=port)
        try:
            for bg in commands.values():
                bg.wait_for("Kafka is reachable again", timeout=30)
            for name, bg in commands.items():
                out = bg.assert_stops_cleanly()
                assert out.count("Kafka is reachable again") == 1, f"{name}:\n{out[-3000:]}"
        finally:
            relay.close()
    finally:
        for bg in commands.values():
            if bg.shell.poll() is None:
                bg.kill()


def _kafka_port(settings: Settings) -> int:
    servers = settings.kafka.bootstrap_servers.split(",")[0]
    return int(servers.rsplit(":", 1)[1])
