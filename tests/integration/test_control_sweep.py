"""The control plane against a careless or hostile operator, from the outside (the real CLI, the twin flow,
the plant simulator behind its OPC-UA bridge), for what an adversarial sweep found wrong:

* a forged record carrying the request id of a real request (sent before it, or after it) must neither block
  that request as a "replay" nor be audited as if its claimed subject had sent it again;
* a policy parameter of `type = "integer"` must accept a whole number sent by `twin set-desired`
  (requests carry JSON numbers, read as floats: every such request used to be denied `bad_type`);
* a setpoint the device clamps must read back over OPC-UA as the clamped value, so the twin reports the
  difference (desynced) instead of "synchronized" at a value the machine never took.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from tests.integration.control_plane_helpers import SETPOINT, ControlPlane, audit, control_plane, state
from tests.kafka_helpers import read_topic
from tests.twin_fixtures import twin_db  # noqa: F401
from tests.twin_kafka import envelope, produce, wait_for
from twinflow.settings import Settings

pytestmark = pytest.mark.integration
POLICY = (
    '[[rule]]\nname = "operators run pumps"\nsubject = { roles = "operator" }\n[rule.parameters]\n'
    'speed_sp_rpm = { min = 0, max = 5000 }\nstage = { type = "integer", min = 0, max = 10 }\n'
)


@pytest.fixture(scope="module")
def sweep(plant, twin_db: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:  # noqa: F811
    stage_twin = f"stage-{plant.uid}"
    twins = {
        plant.twin("opcua"): {"parameters": {"speed_sp_rpm": SETPOINT}},
        stage_twin: {"parameters": {"stage": SETPOINT}},
    }
    with control_plane(plant, twin_db, tmp_path_factory.mktemp("sweep"), POLICY, {"twins": twins}) as plane:
        yield plane


def _signed(plane: ControlPlane, who: str, request: dict) -> bytes:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(plane.keys[who].read_bytes(), None)
    signed = orjson.dumps(request)
    return orjson.dumps({"signed": signed.decode(), "signature": base64.b64encode(key.sign(signed)).decode()})


def test_forged_records_with_a_real_request_id_neither_block_it_nor_speak_for_its_subject(
    plant, sweep: ControlPlane
) -> None:
    s, twin = sweep.s, plant.twin("opcua")
    machine = plant.sim.plant.machines[twin]
    rid = f"sweep-{uuid.uuid4().hex}"
    target = 1500.0 if abs(machine.speed_sp - 1500.0) > 1 else 1550.0
    now = datetime.now(UTC).isoformat()
    request = {"twin_id": twin, "values": {"speed_sp_rpm": target}, "request_id": rid, "issued_at": now}
    real = _signed(sweep, "ann", {**request, "subject": "ann"})
    tampered = orjson.loads(real)
    tampered["signed"] = tampered["signed"].replace(str(target), "4900.0")
    records = [
        orjson.dumps({**request, "subject": "ann", "values": {"speed_sp_rpm": 4900.0}}),  # unsigned, sent first
        real,  # ann's own request: must be applied
        orjson.dumps(tampered),  # ann's bytes, altered
        _signed(sweep, "mallory", {**request, "subject": "mallory"}),  # mallory re-signs ann's request id
        real,  # an exact copy of ann's record
    ]
    produce(s, s.twin.desired_topic, [(twin.encode(), r) for r in records])
    mine = lambda: [a for a in audit(s, twin) if a["new"].get("request_id") == rid]  # noqa: E731
    wait_for("five verdicts on the request id", lambda: len(mine()) == 5)
    assert [(a["actor"], a["decision"], a["reason"]) for a in mine()] == [
        ("ann", "deny", "unsigned"),
        ("ann", "allow", "allowed"),
        ("ann", "deny", "bad_signature"),
        ("mallory", "deny", "replayed_request"),  # was: ("ann", …): mallory's record audited as ann's
        ("ann", "deny", "replayed_request"),
    ]
    outcomes = [orjson.loads(r.value) for r in read_topic(s, s.twin.outcomes_topic) if r.key == twin.encode()]
    assert [o["decision"] for o in outcomes if o["request_id"] == rid] == [
        "denied",
        "applied",
        "denied",
        "denied",
        "denied",
    ]
    wait_for("the device to take ann's setpoint", lambda: abs(machine.speed_sp - target) < 1e-6, timeout=60)
    assert state(s, twin)["desired"]["speed_sp_rpm"]["value"] == target
    assert sweep.cli(None, "audit", "verify").returncode == 0


def test_an_integer_parameter_takes_a_whole_number_from_the_cli(plant, sweep: ControlPlane) -> None:
    s, twin = sweep.s, f"stage-{plant.uid}"
    produce(s, s.topics.raw, [(twin.encode(), envelope(twin, datetime.now(UTC), 1, {"stage": 1.0}, source="test"))])
    wait_for(f"a first state of {twin}", lambda: state(s, twin))
    ok = sweep.cli("ann", "twin", "set-desired", twin, "stage=3")
    assert ok.returncode == 0 and f"applied: {twin} is at desired version 1" in ok.stdout, ok.stdout + ok.stderr
    half = sweep.cli("ann", "twin", "set-desired", twin, "stage=3.5")
    assert half.returncode == 3 and "denied: bad_type stage: expected integer" in half.stderr, half.stderr
    assert state(s, twin)["desired"]["stage"]["value"] == 3.0


def _read_node(endpoint: str, node: str) -> float:
    from asyncua import Client

    async def read() -> float:
        async with Client(endpoint) as client:
            return await client.get_node(node).read_value()

    return asyncio.run(read())


def test_a_clamped_setpoint_reads_back_as_clamped_and_the_twin_says_desynced(plant, sweep: ControlPlane) -> None:
    s, twin = sweep.s, plant.twin("opcua")
    machine = plant.sim.plant.machines[twin]
    sent = sweep.cli("ann", "command", "send", twin, "speed_sp_rpm", "4000")  # allowed (≤ 5000); the pump stops at 3600
    assert sent.returncode == 0 and "applied by opcua bridge" in sent.stdout, sent.stdout + sent.stderr
    wait_for("the simulator to take the setpoint", lambda: machine.speed_sp == 3600.0)
    endpoint = plant.mapping.opcua.endpoint
    node = f"ns=2;s=ua-{plant.uid}.speed_sp_rpm"
    wait_for("the node to read back the clamped value", lambda: _read_node(endpoint, node) == 3600.0, timeout=10)
    time.sleep(1.0)  # the node's value stays there (it does not flip back to the written one)
    assert _read_node(endpoint, node) == 3600.0

    def reported_clamped() -> dict | None:
        st = state(s, twin)
        return st if st["reported"]["speed_sp_rpm"]["value"] == 3600.0 and st["status"] == "desynced" else None

    st = wait_for("the twin to report the clamped setpoint and be desynced", reported_clamped, timeout=30)
    assert st["desired"]["speed_sp_rpm"]["value"] == 4000.0 and st["delta"]["speed_sp_rpm"] == 400.0
    shown = sweep.cli(None, "twin", "show", twin)
    assert "desynced" in shown.stdout, shown.stdout
