"""Closed loop with a fake device: desired → command → device → readings + ack → synchronized.

The plant simulator is built elsewhere; this tiny stand-in consumes ``twin.commands``, acks
each command on ``twin.acks`` (key twin_id) and ramps its speed towards the commanded value
while publishing telemetry envelopes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from typer.testing import CliRunner

from connectors.kafka.clients import client_config, producer_config
from tests.twin_fixtures import delete_topics, settings_env, twin_db, twin_settings_for  # noqa: F401
from tests.twin_kafka import dev_subject, envelope, produce, produce_signed, query, read_all, wait_for
from twinflow.cli.main import app
from twinflow.cli.twin import load_state
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class FakeDevice(threading.Thread):
    """Publishes a speed reading per twin every 100 ms; moves 10 units per tick towards the setpoint."""

    def __init__(self, s: Settings, speeds: dict[str, float]) -> None:
        super().__init__(daemon=True)
        self.s = s
        self.speed = dict(speeds)
        self.setpoint = dict(speeds)
        self.stop = threading.Event()
        self.commands: list[dict] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _loop(self) -> None:
        consumer = Consumer(
            client_config(self.s, **{"group.id": f"dev-{uuid.uuid4().hex}", "enable.auto.commit": False})
        )
        consumer.assign([TopicPartition(self.s.twin.commands_topic, 0, 0)])
        producer = Producer(producer_config(self.s))
        seq = 0
        while not self.stop.is_set():
            for msg in consumer.consume(100, timeout=0.1):
                if msg.error():
                    continue
                cmd = json.loads(msg.value())
                if cmd["twin_id"] not in self.setpoint:
                    continue
                self.commands.append(cmd)
                self.setpoint[cmd["twin_id"]] = cmd["value"]
                ack = {"command_id": cmd["command_id"], "status": "applied", "applied_at": _now()}
                producer.produce(self.s.twin.acks_topic, key=cmd["twin_id"].encode(), value=json.dumps(ack).encode())
            seq += 1
            for twin, target in self.setpoint.items():
                step = max(-10.0, min(10.0, target - self.speed[twin]))
                self.speed[twin] += step
                env = envelope(twin, datetime.now(UTC), seq, {"speed": self.speed[twin]}, source="sim")
                producer.produce(self.s.topics.raw, key=twin.encode(), value=env)
            producer.poll(0)
        producer.flush(10)
        consumer.close()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def loop(twin_db: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str, str, FakeDevice]]:  # noqa: F811
    tag = uuid.uuid4().hex[:6]
    digital, physical = f"dev-{tag}-digital", f"dev-{tag}-physical"
    dead = f"dev-{tag}-dead"
    speed = {"tolerance": 2.0, "clear_tolerance": 1.0, "hold_time_s": 0.3, "ack_timeout_s": 5.0}
    policy = {
        "twins": {
            digital: {"parameters": {"speed": {**speed, "strategy": "digital_wins"}}},
            physical: {"parameters": {"speed": {**speed, "strategy": "physical_wins"}}},
            dead: {
                "max_desync_time_s": 3.0,
                "parameters": {"speed": {**speed, "strategy": "digital_wins", "ack_timeout_s": 0.5, "max_attempts": 2}},
            },
        }
    }
    s = twin_settings_for(twin_db, policy)
    device = FakeDevice(s, {digital: 100.0, physical: 100.0})
    log = open(tmp_path / "flow.log", "wb")  # noqa: SIM115 (closed below)
    flow = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "twinflow.dataflows:twin()", "-w", "1", "-s", "1"],
        cwd=REPO,
        env={**os.environ, **settings_env(s)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    device.start()
    try:
        yield s, digital, physical, device
    finally:
        device.stop.set()
        device.join(15)
        flow.send_signal(signal.SIGKILL)
        flow.wait(30)
        log.close()
        delete_topics(s)
    assert device.error is None, device.error


def test_digital_wins_drives_the_device_and_physical_wins_follows_it(
    loop: tuple[Settings, str, str, FakeDevice], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, digital, physical, device = loop
    for twin in (digital, physical):
        wait_for(f"a first state of {twin}", lambda t=twin: load_state(s, t))
    for key, value in settings_env(s).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    version = load_state(s, digital)["desired_version"]
    res = runner.invoke(
        app, ["twin", "set-desired", digital, "speed=150", "--expect-version", str(version), "--reason", "t"]
    )
    assert res.exit_code == 0, res.output
    assert f"applied: {digital} is at desired version {version + 1}" in res.output
    # physical_wins: the device owns the value; the request is refused and changes nothing
    res = runner.invoke(app, ["twin", "set-desired", physical, "speed=150"])
    assert res.exit_code == 3 and "denied: physical_wins" in res.output, res.output

    def converged():
        st = load_state(s, digital)
        return st if st["status"] == "synchronized" and st["desired"]["speed"]["value"] == 150.0 else None

    state = wait_for("the digital_wins twin to converge and synchronize", converged)
    assert abs(state["reported"]["speed"]["value"] - 150.0) <= 2.0
    assert state["sync_latency_ms"] is not None and state["sync_latency_ms"] > 0
    assert state["last_sync_time"] is not None
    history = query(
        s,
        "SELECT version, status, change FROM twin_state_history WHERE twin_id = %s ORDER BY version",
        (digital,),
    )
    assert [h["version"] for h in history] == list(range(1, len(history) + 1))
    went_desynced = [h for h in history if h["change"]["cause"] == "desired"]
    assert went_desynced[0]["status"] == "desynced" and went_desynced[0]["change"]["author"] == dev_subject()
    assert [(c["twin_id"], c["value"]) for c in device.commands] == [(digital, 150.0)]
    acks = read_all(s, s.twin.acks_topic)
    assert [(k, v["command_id"]) for k, v in acks] == [(digital.encode(), device.commands[0]["command_id"])]
    quality = query(
        s,
        "SELECT count(*) AS n FROM twin_sync_quality WHERE twin_id = %s AND sync_latency_ms > 0",
        (digital,),
    )
    assert quality[0]["n"] >= 1

    state = load_state(s, physical)
    assert state["status"] == "synchronized" and "speed" not in state["desired"]
    assert all(c["twin_id"] != physical for c in device.commands)

    # A device that went silent: no readings, no acks. The live flow's clock ticks still time out the
    # command, retry it, give up and escalate.
    dead = digital.replace("-digital", "-dead")
    now = datetime.now(UTC)
    produce(s, s.topics.raw, [(dead.encode(), envelope(dead, now, 1, {"speed": 100.0}))])
    wait_for("a first state of the silent twin", lambda: load_state(s, dead))
    produce_signed(s, dead, {"speed": 150.0})

    def escalated():
        kinds = [
            (v["kind"], v["detail"].get("attempts")) for k, v in read_all(s, s.twin.desync_topic) if k == dead.encode()
        ]
        return kinds if ("desync", None) in kinds else None

    kinds = wait_for("the silent twin to escalate", escalated, timeout=30)
    assert ("command_failed", 2) in kinds
    dead_commands = [v for k, v in read_all(s, s.twin.commands_topic) if k == dead.encode()]
    assert len(dead_commands) == 2 and len({c["command_id"] for c in dead_commands}) == 2

    stale = runner.invoke(
        app,
        [
            "twin",
            "set-desired",
            digital,
            "speed=170",
            "--expect-version",
            "0",
        ],
    )
    assert stale.exit_code == 3 and "denied: stale_version" in stale.output, stale.output
    assert load_state(s, digital)["desired"]["speed"]["value"] == 150.0

    shown = runner.invoke(app, ["twin", "show", digital])
    assert shown.exit_code == 0 and "synchronized" in shown.output and "speed" in shown.output, shown.output
    before = runner.invoke(app, ["twin", "show", digital, "--at", "2000-01-01T00:00:00Z"])
    assert before.exit_code == 1 and "no state" in before.output
    now = runner.invoke(app, ["twin", "show", digital, "--at", datetime.now(UTC).isoformat()])  # a time with state
    assert now.exit_code == 0 and "desired version" in now.output and "speed" in now.output, now.output
