"""One pump per protocol: simulator → bridge → Kafka, and commands back to the simulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest

from connectors.kafka.commands import wait_ack
from operators.records.commands import decode_ack, new_command
from operators.records.envelope import decode
from tests.kafka_helpers import read_topic

from .plant_helpers import consume, send_command, wait_for

pytestmark = pytest.mark.integration
PROTOCOLS = ["opcua", "mqtt", "modbus"]


def raw_messages(plant, twin: str, done, timeout: float = 20.0) -> list:
    key = twin.encode()
    msgs = consume(
        plant.settings, plant.settings.topics.raw, lambda ms: done([m for m in ms if m.key() == key]), timeout
    )
    return [m for m in msgs if m.key() == key]


def envelopes(plant, twin: str, done, timeout: float = 20.0):
    """Valid envelopes of ``twin`` (bad-status values without a value are checked separately)."""
    msgs = raw_messages(plant, twin, done, timeout)
    return [decode(m.value(), key=m.key()) for m in msgs if b"null" not in m.value()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_values_arrive_with_source_timestamp_and_quality(plant, protocol: str) -> None:
    twin = plant.twin(protocol)
    envs = envelopes(plant, twin, lambda ms: len(ms) >= 15)
    assert len(envs) >= 15, f"{protocol}: only {len(envs)} envelopes"
    assert {e.source for e in envs} == {protocol}
    seqs = [e.seq for e in envs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    measured = [e for e in envs if "speed_rpm" in e.readings]
    assert measured, f"{protocol}: no speed reading"
    for e in measured:
        assert 1300 < e.readings["speed_rpm"] < 1600
        assert e.quality == "good"
    if protocol in ("opcua", "mqtt"):
        # Source timestamps are the simulator's ticks (multiples of 100 ms), not receive times.
        assert all(e.ts.microsecond % 100_000 == 0 for e in measured), [e.ts for e in measured[:5]]
    else:
        # Modbus has no source timestamp: the poll time, close to now.
        assert all(abs((datetime.now(UTC) - e.ts).total_seconds()) < 60 for e in measured)
    if protocol == "opcua":
        # The failed sensor arrives with quality "bad" and, per OPC-UA, no value: it is forwarded
        # (the flow dead-letters it with the reason) rather than dropped.
        docs = [orjson.loads(m.value()) for m in raw_messages(plant, twin, lambda ms: True)]
        temps = [d for d in docs if "temp_c" in d["readings"]]
        assert temps and all(d["quality"] == "bad" for d in temps), temps[:3]
        assert all(d["quality"] == "good" for d in docs if "speed_rpm" in d["readings"])
    if protocol == "modbus":
        temps = [e.readings["temp_c"] for e in envs if "temp_c" in e.readings]
        assert temps and all(20 < t < 90 for t in temps), temps[:5]  # int16, scale 0.1, offset -40


def _acks_for(plant, command_id: str) -> list:
    """Every ack of ``command_id`` on the acks topic now (read to its end, not for a fixed time)."""
    records = read_topic(plant.settings, plant.settings.twin.acks_topic)
    return [a for a in (decode_ack(r.value) for r in records if r.value) if a.command_id == command_id]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_command_changes_simulated_speed_and_is_acked_once(plant, protocol: str) -> None:
    twin = plant.twin(protocol)
    machine = plant.sim.plant.machines[twin]
    target = 1000.0 if protocol != "mqtt" else 1100.0
    cmd = new_command(twin, "speed_sp_rpm", target)
    send_command(plant.settings, cmd)
    acks = wait_ack(plant.settings, cmd.command_id, 20)
    assert [a.status for a in acks] == ["applied"], acks
    assert acks[0].source == protocol
    wait_for(lambda: abs(machine.speed_sp - target) < 1e-6, 10, "the simulator to take the setpoint")
    # The new speed shows up in the telemetry of that twin.
    after = acks[0].applied_at
    envs = envelopes(
        plant,
        twin,
        lambda ms: any(abs(orjson.loads(m.value())["readings"].get("speed_rpm", 0) - target) < 15 for m in ms),
        timeout=20,
    )
    late = [e for e in envs if e.ts >= after and "speed_rpm" in e.readings]
    assert any(abs(e.readings["speed_rpm"] - target) < 15 for e in late), [e.readings for e in late[-3:]]
    time.sleep(1.0)
    assert len(_acks_for(plant, cmd.command_id)) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_write_to_read_only_parameter_is_rejected_with_reason(plant, protocol: str) -> None:
    twin = plant.twin(protocol)
    cmd = new_command(twin, "temp_c", 10.0)
    send_command(plant.settings, cmd)
    acks = wait_ack(plant.settings, cmd.command_id, 20)
    assert len(acks) == 1 and acks[0].status == "rejected", acks
    assert "read-only" in acks[0].error and "temp_c" in acks[0].error
    time.sleep(1.0)
    assert len(_acks_for(plant, cmd.command_id)) == 1


def test_expired_command_is_not_applied(plant) -> None:
    twin = plant.twin("modbus")
    machine = plant.sim.plant.machines[twin]
    before = machine.speed_sp
    cmd = new_command(twin, "speed_sp_rpm", 700.0, now=datetime(2020, 1, 1, tzinfo=UTC))
    send_command(plant.settings, cmd)
    acks = wait_ack(plant.settings, cmd.command_id, 20)
    assert [a.status for a in acks] == ["expired"]
    assert machine.speed_sp == before


def test_malformed_device_payloads_reach_the_dead_letter_topic(plant, tmp_path) -> None:
    """A bad device publishes garbage; the bridge forwards it and the telemetry flow dead-letters it."""
    import uuid

    import paho.mqtt.client as mqtt
    from bytewax.testing import run_main

    from connectors.mqtt.mapped import MappedMqttBridge
    from flows.telemetry import build_flow

    from .plant_helpers import private_settings

    uid = plant.uid
    # A bridge of its own on private topics, so the flow below reads a topic that stops growing.
    settings = private_settings(tmp_path, uuid.uuid4().hex[:8])
    mapping = plant.mapping.model_copy(
        update={"mqtt": plant.mapping.mqtt.model_copy(update={"client_id": f"it-dlq-{uid}"})}
    )
    bridge = MappedMqttBridge(settings, mapping, commands=False).start()
    assert bridge.connected.wait(10)
    bad = {
        f"it/{uid}/pump/state": b'{"motor": {"speed_rpm": 14',  # truncated JSON
        f"it/{uid}/pump/vibration": b"vibration: high",  # not a number
    }
    wrong_type = (f"it/{uid}/pump/state", b'{"motor": {"speed_rpm": "fast"}, "ts": "2026-11-25T08:00:00Z"}')
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-bad-device-{uid}")
    pub.connect("127.0.0.1", settings.mqtt.port)
    pub.loop_start()
    for topic, payload in [*bad.items(), wrong_type]:
        pub.publish(topic, payload, qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    try:
        wait_for(lambda: bridge.unmapped >= 2, 15, "the MQTT bridge to forward the unmappable payloads")
    finally:
        bridge.stop(30)
    assert bridge.publisher.counters.delivered == bridge.publisher.counters.put

    run_main(build_flow(settings, tail=False, flow_id=f"it-dlq-{uid}"))

    dead = consume(
        settings,
        settings.topics.dlq,
        lambda ms: {m.value() for m in ms} >= set(bad.values()) and any(b'"fast"' in m.value() for m in ms),
        timeout=30,
    )
    by_value = {m.value(): dict(m.headers()) for m in dead}
    for payload in bad.values():
        assert payload in by_value, f"{payload!r} not dead-lettered"
        assert by_value[payload]["dlq.reason"] in (b"bad_json", b"schema"), by_value[payload]
        assert by_value[payload]["dlq.detail"]
    typed = [h for v, h in by_value.items() if b'"fast"' in v]
    assert typed and typed[0]["dlq.reason"] == b"schema"
