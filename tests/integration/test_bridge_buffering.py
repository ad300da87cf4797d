"""Kafka stopped for 20 s while the three bridges run: no reading is lost (counted by seq per twin)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from connectors.modbus.bridge import ModbusBridge
from connectors.mqtt.mapped import MappedMqttBridge
from connectors.opcua.bridge import OpcuaBridge
from connectors.sim.runner import Simulator

from .plant_helpers import consume, free_port, plant_toml, wait_for, write_mapping
from .private_kafka import private_kafka

pytestmark = pytest.mark.integration

OUTAGE_S = 20


def test_kafka_outage_loses_no_reading(tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    kafka, settings = private_kafka(
        tmp_path,
        topics={"raw": f"it.raw.{uid}", "raw_partitions": 1},
        bridge={
            # Small windows so the outage fills memory and spills to the file.
            "buffer": {"spill_dir": str(tmp_path / "buffer"), "memory_records": 50, "max_in_flight": 20},
            "reconnect_max_s": 2.0,
        },
        sim={"ground_truth_file": str(tmp_path / "gt.jsonl")},
    )
    mapping = write_mapping(tmp_path, plant_toml(uid, free_port(), free_port()))
    kafka.up()
    sim = Simulator(settings, mapping, ground_truth_kafka=False).start()
    bridges = [cls(settings, mapping, commands=False) for cls in (OpcuaBridge, MappedMqttBridge, ModbusBridge)]
    try:
        for b in bridges:
            b.start()
            assert b.connected.wait(20), f"{b.protocol} did not connect"
        wait_for(lambda: all(b.publisher.counters.delivered > 5 for b in bridges), 20, "first deliveries")

        kafka.down()
        outage_end = time.monotonic() + OUTAGE_S
        wait_for(lambda: all(b.publisher.counters.buffered > 60 for b in bridges), OUTAGE_S, "readings to buffer")
        time.sleep(max(outage_end - time.monotonic(), 0))
        during = {b.protocol: b.publisher.stats() for b in bridges}
        kafka.up()

        for b in bridges:
            assert b.publisher.wait_idle(90), f"{b.protocol}: backlog not drained {b.publisher.stats()}"
    finally:
        for b in bridges:
            b.stop(30)
        sim.stop()

    for proto, stats in during.items():
        assert stats["spilled"] > 0, f"{proto} never spilled to its file: {stats}"
        assert stats["dropped"] == 0
    expected = {b.assets[0].twin_id: b for b in bridges}
    msgs = consume(
        settings,
        settings.topics.raw,
        lambda ms: len({(m.key(), orjson.loads(m.value())["seq"]) for m in ms}) >= sum(b.envelopes for b in bridges),
        timeout=60,
    )
    try:
        for twin, bridge in expected.items():
            seqs = {orjson.loads(m.value())["seq"] for m in msgs if m.key() == twin.encode()}
            assert seqs, f"{twin}: nothing arrived"
            last = bridge.seq.last(twin)
            assert max(seqs) == last, f"{twin}: last seq {last} missing"
            missing = set(range(min(seqs), last + 1)) - seqs
            assert not missing, f"{twin}: {len(missing)} readings lost, e.g. seq {sorted(missing)[:5]}"
            assert len(seqs) == bridge.envelopes, f"{twin}: {len(seqs)} arrived, {bridge.envelopes} emitted"
            assert bridge.envelopes > 100
    finally:
        kafka.down()
