"""Reconciliation against the real plant simulator and bridges (not a stand-in device).

digital_wins: a desired speed setpoint becomes a command on twin.commands, the OPC-UA bridge
writes it to the simulator, the simulated pump changes, the reported setpoint converges and the
twin returns to synchronized with its sync latency recorded. physical_wins: desired follows
reported on the Modbus pump.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.twin_settings import TwinSettings
from tests.twin_fixtures import settings_env, twin_db  # noqa: F401
from tests.twin_kafka import produce_signed, query, read_all, wait_for
from twinflow.cli.twin import load_state
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SETPOINT = {"tolerance": 5.0, "clear_tolerance": 2.0, "hold_time_s": 0.3, "ack_timeout_s": 10.0}


@pytest.fixture
def twin_flow(plant, twin_db: Settings, tmp_path: Path) -> Iterator[Settings]:  # noqa: F811
    """The twin flow over the plant's topics (raw, commands, acks) with a policy for its pumps."""
    from connectors.kafka.clients import ensure_topics

    sfx = uuid.uuid4().hex[:8]
    ps = plant.settings
    policy = {
        "twins": {
            plant.twin("opcua"): {"parameters": {"speed_sp_rpm": {**SETPOINT, "strategy": "digital_wins"}}},
            plant.twin("modbus"): {"parameters": {"speed_sp_rpm": {**SETPOINT, "strategy": "physical_wins"}}},
        }
    }
    tw = TwinSettings.model_validate(
        {
            **ps.twin.model_dump(exclude={"policy"}),
            "desired_topic": f"it.desired.{sfx}",
            "state_topic": f"it.state.{sfx}",
            "desync_topic": f"it.desync.{sfx}",
            "late_topic": f"it.late.{sfx}",
            "outcomes_topic": f"it.outcomes.{sfx}",
            "partitions": 1,
            "policy": policy,
        }
    )
    s = ps.model_copy(update={"twin": tw, "postgres": twin_db.postgres})
    ensure_topics(s)
    log = open(tmp_path / "twin-flow.log", "wb")  # noqa: SIM115 (closed below)
    flow = subprocess.Popen(
        [sys.executable, "-m", "twinflow.cli.main", "run", "twin", "--no-recovery"],
        cwd=REPO,
        env={**os.environ, **settings_env(s)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield s
    finally:
        os.killpg(flow.pid, signal.SIGINT)
        flow.wait(30)
        log.close()


def test_digital_wins_drives_the_simulator_and_physical_wins_follows_it(plant, twin_flow: Settings) -> None:
    s = twin_flow
    ua, mb = plant.twin("opcua"), plant.twin("modbus")
    for twin in (ua, mb):
        wait_for(f"a first state of {twin}", lambda t=twin: load_state(s, t))
    before = load_state(s, ua)["reported"]["speed_rpm"]["value"]
    target = 1200.0 if before > 1300 else 1450.0

    produce_signed(s, ua, {"speed_sp_rpm": target}, reason="integration test")

    def converged():
        st = load_state(s, ua)
        desired = st["desired"].get("speed_sp_rpm", {}).get("value")
        return st if st["status"] == "synchronized" and desired == target else None

    state = wait_for("the OPC-UA pump to follow its new setpoint and synchronize", converged)
    assert abs(state["reported"]["speed_sp_rpm"]["value"] - target) <= SETPOINT["tolerance"]
    assert state["sync_latency_ms"] is not None and state["sync_latency_ms"] > 0
    # The simulated pump's physics changed: its measured speed moves towards the new setpoint.
    wait_for(
        "the simulated speed to move towards the setpoint",
        lambda: abs(load_state(s, ua)["reported"]["speed_rpm"]["value"] - target) < abs(before - target) / 2,
    )
    history = query(s, "SELECT version FROM twin_state_history WHERE twin_id = %s ORDER BY version", (ua,))
    assert [h["version"] for h in history] == list(range(1, len(history) + 1))

    # physical_wins: the Modbus pump owns its setpoint; a request for it is refused with the reason and
    # the twin's desired state does not take it.
    reported_sp = load_state(s, mb)["reported"]["speed_sp_rpm"]["value"]
    rid = produce_signed(s, mb, {"speed_sp_rpm": reported_sp + 100.0}, reason="integration test")

    def verdict():
        return [v for k, v in read_all(s, s.twin.outcomes_topic) if v["request_id"] == rid]

    (v,) = wait_for("the verdict on the physical_wins request", verdict)
    assert (v["decision"], v["reason"]) == ("denied", "physical_wins")
    assert "speed_sp_rpm" not in load_state(s, mb)["desired"]
