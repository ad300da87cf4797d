"""Fixtures for the connector integration tests (real simulator servers, shared Kafka/Mosquitto)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.bridges.mapping.schema import Mapping
from twinflow.settings import Settings

from .plant_helpers import CREATED, drop_topics, free_port, plant_toml, private_settings, write_mapping

logging.getLogger("asyncua").setLevel(logging.WARNING)
logging.getLogger("pymodbus").setLevel(logging.WARNING)


@dataclass
class Plant:
    uid: str
    settings: Settings
    mapping: Mapping
    sim: object
    bridges: dict[str, object]

    def twin(self, protocol: str) -> str:
        return {
            "opcua": f"pump-ua-{self.uid}",
            "mqtt": f"pump-mq-{self.uid}",
            "modbus": f"pump-mb-{self.uid}",
        }[protocol]


@pytest.fixture(scope="session", autouse=True)
def _drop_private_topics() -> Iterator[None]:
    yield
    drop_topics(CREATED)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    """Simulator (one pump per protocol) and the three bridges, on private topics."""
    from connectors.modbus.bridge import ModbusBridge
    from connectors.mqtt.mapped import MappedMqttBridge
    from connectors.opcua.bridge import OpcuaBridge
    from connectors.sim.faults import Fault
    from connectors.sim.runner import Simulator

    tmp: Path = tmp_path_factory.mktemp("plant")
    uid = uuid.uuid4().hex[:8]
    settings = private_settings(tmp, uid)
    mapping = write_mapping(tmp, plant_toml(uid, free_port(), free_port()))
    # A failed temperature sensor on the OPC-UA pump: its values must arrive with quality "bad".
    faults = [Fault(f"pump-ua-{uid}", "sensor_failure", 0.0, None, 1.0, "temp_c")]
    sim = Simulator(settings, mapping, faults).start()
    bridges = {}
    try:
        for cls in (OpcuaBridge, MappedMqttBridge, ModbusBridge):
            b = cls(settings, mapping)
            bridges[b.protocol] = b.start()
        for b in bridges.values():
            assert b.connected.wait(20), f"{b.protocol} bridge did not connect"
            assert b.commands.assigned.wait(30), f"{b.protocol} command consumer got no partition"
        yield Plant(uid, settings, mapping, sim, bridges)
    finally:
        for b in bridges.values():
            b.stop(10)
        sim.stop()
