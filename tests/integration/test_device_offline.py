"""A device that goes offline while its bridge stays connected, through the real simulator, bridges,
Kafka and `twinflow run pipeline` into the twin's state (docs/reconciliation.md, "Connectivity").

The simulator's ``device_offline`` fault makes the OPC-UA pump's nodes read BadNoCommunication (a
gateway whose PLC is gone), the Modbus pump's unit answer exception 0x0B (gateway target device
failed to respond) and the MQTT pump go silent. Each twin goes offline with the reason, a desired
change to the offline OPC-UA pump is accepted with its command held, the alerts flow opens a
device_offline alert, and all come back online (the alert resolves, the held command reaches the pump).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from operators.twin.connectivity import HELD
from tests.integration.plant_helpers import free_port, plant_toml, started_flows, write_mapping
from tests.twin_fixtures import twin_db  # noqa: F401
from tests.twin_kafka import produce_signed, query, read_all, wait_for
from twinflow.cli.twin import load_state
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ONSET_S, END_S = 25.0, 55.0  # the fault, in seconds after the simulator's start
OFFLINE_AFTER_S = 4.0
SETPOINT = {"strategy": "digital_wins", "tolerance": 5.0, "hold_time_s": 0.3, "ack_timeout_s": 10.0}


@dataclass
class Offline:
    uid: str
    settings: Settings
    env: dict[str, str]

    def twin(self, protocol: str) -> str:
        return {"opcua": f"pump-ua-{self.uid}", "mqtt": f"pump-mq-{self.uid}", "modbus": f"pump-mb-{self.uid}"}[
            protocol
        ]


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, twin_db: Settings) -> Iterator[Offline]:  # noqa: F811
    """Simulator with a device_offline fault on every pump, the three bridges and the pipeline flow."""
    from connectors.modbus.bridge import ModbusBridge
    from connectors.mqtt.mapped import MappedMqttBridge
    from connectors.opcua.bridge import OpcuaBridge
    from connectors.sim.faults import Fault
    from connectors.sim.runner import Simulator

    tmp: Path = tmp_path_factory.mktemp("offline")
    uid = uuid.uuid4().hex[:8]
    policy = {"twins": {f"pump-ua-{uid}": {"parameters": {"speed_sp_rpm": SETPOINT}}}}
    env = {
        **topic_env(twin_db, f"it.off.{uid}."),
        "TWINFLOW_TOPICS__RAW_PARTITIONS": "1",
        "TWINFLOW_TWIN__PARTITIONS": "1",
        "TWINFLOW_POSTGRES__DBNAME": twin_db.postgres.dbname,
        "TWINFLOW_TWIN__OFFLINE_AFTER_S": str(OFFLINE_AFTER_S),
        "TWINFLOW_TWIN__OFFLINE_ALERT_AFTER_S": "3",
        "TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S": "2",
        "TWINFLOW_TWIN__POLICY": orjson.dumps(policy).decode(),
        "TWINFLOW_BRIDGE__COMMAND_GROUP": f"it-off-{uid}",
        "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp / "buffer"),
        "TWINFLOW_SIM__GROUND_TRUTH_FILE": str(tmp / "ground-truth.jsonl"),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp / "recovery"),
    }
    mapping = write_mapping(tmp, plant_toml(uid, free_port(), free_port()))
    faults = [Fault(f"pump-{p}-{uid}", "device_offline", ONSET_S, END_S) for p in ("ua", "mb", "mq")]
    with started_flows(env, ["pipeline", "alerts"], tmp) as settings:
        sim = Simulator(settings, mapping, faults).start()
        bridges = []
        try:
            for cls in (OpcuaBridge, MappedMqttBridge, ModbusBridge):
                bridges.append(cls(settings, mapping).start())
            for b in bridges:
                assert b.connected.wait(20), f"{b.protocol} bridge did not connect"
            yield Offline(uid, settings, {**os.environ, **env})
        finally:
            for b in bridges:
                b.stop(10)
            sim.stop()


def _alert(s: Settings, twin: str, state: str) -> dict | None:
    rows = query(
        s,
        "SELECT state, severity, summary, evidence FROM alerts WHERE twin_id = %s AND kind = 'device_offline'"
        " ORDER BY opened_at DESC, version DESC LIMIT 1",
        (twin,),
    )
    return rows[0] if rows and rows[0]["state"] == state else None


def _connectivity(s: Settings, twin: str, state: str) -> dict | None:
    row = load_state(s, twin)
    return row if row is not None and (row.get("connectivity") or {}).get("state") == state else None


def test_offline_devices_are_offline_in_their_state_with_the_reason_and_come_back(offline: Offline) -> None:
    s = offline.settings
    ua, mb, mq = (offline.twin(p) for p in ("opcua", "modbus", "mqtt"))
    for twin in (ua, mb, mq):
        row = wait_for(f"{twin} online", lambda t=twin: _connectivity(s, t, "online"), timeout=ONSET_S)
        assert row["status"] == "synchronized"

    row = wait_for(f"{ua} offline", lambda: _connectivity(s, ua, "offline"), timeout=ONSET_S + 20)
    assert row["status"] == "offline"
    assert row["connectivity"]["reason"].startswith(f"opcua BadNoCommunication on {ua}.")
    assert row["reported"]["speed_rpm"]["value"] > 0  # the last values are kept; the twin says they are old

    # A desired change to the offline pump is accepted; its command waits for the device.
    rid = produce_signed(s, ua, {"speed_sp_rpm": 1200.0}, reason="integration test")
    (verdict,) = wait_for(
        "the verdict", lambda: [v for _k, v in read_all(s, s.twin.outcomes_topic) if v["request_id"] == rid]
    )
    assert verdict["decision"] == "applied" and verdict["commands"] == [] and HELD in verdict["detail"]

    row = wait_for(f"{mb} offline", lambda: _connectivity(s, mb, "offline"), timeout=20)
    assert row["status"] == "offline"
    assert row["connectivity"]["reason"].startswith(f"modbus BadGatewayTargetNoResponse on {mb}.")

    row = wait_for(f"{mq} offline", lambda: _connectivity(s, mq, "offline"), timeout=20)
    assert row["status"] == "offline"
    assert row["connectivity"]["reason"] == f"no reading for {OFFLINE_AFTER_S:g} s (twin.offline_after_s)"

    shown = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "twin", "show", ua],
        cwd=REPO,
        env=offline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "offline (mode normal" in shown.stdout and "device offline since" in shown.stdout
    assert "BadNoCommunication" in shown.stdout

    alert = wait_for(f"a device_offline alert for {ua}", lambda: _alert(s, ua, "open"), timeout=20)
    assert alert["severity"] == "major" and "device cannot be reached: opcua BadNoCommunication" in alert["summary"]

    for twin in (ua, mb, mq):
        row = wait_for(f"{twin} back online", lambda t=twin: _connectivity(s, t, "online"), timeout=END_S)
        assert row["status"] in ("synchronized", "desynced")

    def converged():
        st = load_state(s, ua)
        return st if st["status"] == "synchronized" and st["desired"]["speed_sp_rpm"]["value"] == 1200.0 else None

    wait_for(f"the device_offline alert of {ua} resolved", lambda: _alert(s, ua, "resolved"), timeout=30)
    state = wait_for("the held command to reach the pump once it is back", converged, timeout=60)
    assert abs(state["reported"]["speed_sp_rpm"]["value"] - 1200.0) <= SETPOINT["tolerance"]
