"""The device goes away and comes back: the bridge reconnects with backoff and re-subscribes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from connectors.modbus.bridge import ModbusBridge
from connectors.opcua.bridge import OpcuaBridge
from connectors.sim.runner import Simulator

from .plant_helpers import free_port, plant_toml, private_settings, wait_for, write_mapping

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("protocol", ["opcua", "modbus"])
def test_bridge_reconnects_after_device_restart(tmp_path: Path, protocol: str) -> None:
    uid = uuid.uuid4().hex[:8]
    settings = private_settings(tmp_path, uid)
    mapping = write_mapping(tmp_path, plant_toml(uid, free_port(), free_port()))
    cls = OpcuaBridge if protocol == "opcua" else ModbusBridge
    sim = Simulator(settings, mapping, protocols=(protocol,), ground_truth_kafka=False).start()
    bridge = cls(settings, mapping, commands=False).start()
    try:
        assert bridge.connected.wait(20)
        wait_for(lambda: bridge.values > 20, 20, "first values")
        sim.stop()
        wait_for(lambda: not bridge.connected.is_set(), 20, "the bridge to notice the device is gone")
        during = bridge.values
        sim = Simulator(settings, mapping, protocols=(protocol,), ground_truth_kafka=False).start()
        wait_for(bridge.connected.is_set, 30, "the bridge to reconnect")
        # New values flow again: the subscription / polling was re-created on the new server.
        wait_for(lambda: bridge.values > during + 20, 20, "values after the reconnect")
    finally:
        bridge.stop(10)
        sim.stop()
    assert bridge.publisher.counters.dropped == 0
