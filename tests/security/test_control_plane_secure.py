"""The desired-state gate through the secure profile: the twin flow (its own Kafka principal and
PostgreSQL role) between people's CLI (the operator principal) and a device (the plant simulator's
OPC-UA pump behind the OPC-UA bridge, app principal). Kafka ACLs let only the twin flow write
twin.commands (and the mode on twin.status); a denied change never reaches the device."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from connectors.bridges.mapping.loading import load_mapping
from connectors.kafka.clients import producer_config
from operators.security.request_auth import new_private_key, private_key_pem, public_key_text
from tests.kafka_helpers import read_topic
from tests.process_helpers import start_twinflow, stop
from tests.twin_kafka import wait_for
from twinflow.runner import free_ports

pytestmark = pytest.mark.integration


def _write_identity(tmp: Path) -> dict[str, Path]:
    keys, lines = {}, []
    for name, role in (("ann", "operator"), ("mallory", "guest")):
        key = new_private_key()
        keys[name] = tmp / f"{name}.key"
        keys[name].write_bytes(private_key_pem(key))
        lines.append(f'[subject.{name}]\nroles = ["{role}"]\npublic_keys = ["{public_key_text(key)}"]\n')
    (tmp / "subjects.toml").write_text("".join(lines))
    (tmp / "policy.toml").write_text(
        '[[rule]]\nname = "operators"\nsubject = { roles = "operator" }\nalerts = ["ack"]\nmodels = ["rebaseline"]\n'
        "[rule.parameters]\nspeed_sp_rpm = { min = 0, max = 3000 }\n"
    )
    return keys


def _produce_errors(settings, topic: str, key: bytes, value: bytes) -> list[str]:
    errors: list[str] = []
    p = Producer(producer_config(settings, **{"message.timeout.ms": 10000}))
    p.produce(topic, key=key, value=value, on_delivery=lambda e, _m: e and errors.append(str(e)))
    p.flush(20)
    return errors


def test_the_gate_and_the_acls_of_the_secure_profile(secure_stack, tmp_path):
    from connectors.opcua.bridge import OpcuaBridge
    from connectors.sim.runner import Simulator

    stack = secure_stack
    uid = uuid.uuid4().hex[:6]
    twin = f"pump-sec-{uid}"
    (port,) = free_ports(1)
    mapping_file = tmp_path / "plant.toml"
    mapping_file.write_text(
        f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{port}/twinflow/"\npublishing_interval_ms = 100\n'
        f'sampling_interval_ms = 50\n\n[[assets]]\ntwin_id = "{twin}"\ntype = "pump"\nprotocol = "opcua"\n'
        f'[assets.params]\nspeed_sp_rpm = {{ node = "ns=2;s={uid}.speed_sp_rpm", writable = true }}\n'
        f'speed_rpm = {{ node = "ns=2;s={uid}.speed_rpm" }}\n'
    )
    mapping = load_mapping(mapping_file)
    keys = _write_identity(tmp_path)
    security = {
        "TWINFLOW_SECURITY__SUBJECTS_FILE": str(tmp_path / "subjects.toml"),
        "TWINFLOW_SECURITY__POLICY_FILE": str(tmp_path / "policy.toml"),
    }
    policy = {"twins": {twin: {"parameters": {"speed_sp_rpm": {"strategy": "digital_wins", "tolerance": 5.0}}}}}
    app = stack.role("app")
    app = app.model_copy(update={"bridge": app.bridge.model_copy(update={"command_group": f"twinflow-sec-{uid}"})})
    sim = Simulator(app, mapping, protocols=("opcua",), ground_truth_kafka=False).start()
    bridge = OpcuaBridge(app, mapping).start()
    log_path = tmp_path / "twin-flow.log"
    log = open(log_path, "wb")  # noqa: SIM115
    flow_env = stack.role_env("twin", **security, TWINFLOW_TWIN__POLICY=json.dumps(policy))
    flow = start_twinflow(["run", "twin", "--no-recovery"], flow_env, log)
    admin = stack.admin

    def cli(who: str, *args: str) -> subprocess.CompletedProcess:
        env = stack.role_env("operator", **security, TWINFLOW_SECURITY__KEY_FILE=str(keys[who]), COLUMNS="200")
        return subprocess.run(
            [sys.executable, "-m", "twinflow.cli.main", *args], env=env, capture_output=True, text=True, timeout=90
        )

    def state():
        with psycopg.connect(admin.postgres.conninfo()) as db:
            return db.execute("SELECT version FROM twin_state_current WHERE twin_id = %s", (twin,)).fetchone()

    try:
        assert bridge.connected.wait(30) and bridge.commands.assigned.wait(30)
        machine = sim.plant.machines[twin]
        wait_for("the twin's first state through the secure stack", state, timeout=90)
        before = machine.speed_sp
        target = 1200.0 if before > 1300 else 1450.0

        denied = cli("mallory", "twin", "set-desired", twin, f"speed_sp_rpm={target}")
        assert denied.returncode == 3 and "denied: no_matching_rule" in denied.stderr, denied.stdout + denied.stderr
        # Raw producers: the app principal (bridges, other flows) and the operator principal may not
        # write twin.commands; the app principal may not write twin.desired or the mode on twin.status.
        cmd = orjson.dumps({"command_id": "x", "twin_id": twin, "parameter": "speed_sp_rpm", "value": target,
                            "issued_at": "2026-01-01T00:00:00Z"})  # fmt: skip
        operator = stack.role("operator")
        for who, settings, topic in (
            ("app", app, app.twin.commands_topic),
            ("operator", operator, app.twin.commands_topic),
            ("app", app, app.twin.desired_topic),
            ("app", app, app.alerts.status_topic),
        ):
            errors = _produce_errors(settings, topic, twin.encode(), cmd)
            assert errors and "uthoriz" in " ".join(errors), (who, topic, errors)
        time.sleep(2.0)
        assert [r for r in read_topic(admin, admin.twin.commands_topic) if r.key == twin.encode()] == []
        assert machine.speed_sp == before

        allowed = cli("ann", "twin", "set-desired", twin, f"speed_sp_rpm={target}")
        assert allowed.returncode == 0 and "applied" in allowed.stdout, allowed.stdout + allowed.stderr
        wait_for("the device to take the setpoint", lambda: abs(machine.speed_sp - target) < 1e-6, timeout=60)
        with psycopg.connect(admin.postgres.conninfo()) as db:
            audit = db.execute(
                "SELECT actor, decision, reason FROM desired_audit WHERE twin_id = %s ORDER BY id", (twin,)
            ).fetchall()
        assert audit == [("mallory", "deny", "no_matching_rule"), ("ann", "allow", "allowed")]
        verify = cli("ann", "audit", "verify")
        assert verify.returncode == 0 and "audit chain intact" in verify.stdout, verify.stdout + verify.stderr
    finally:
        stop(flow)
        log.close()
        bridge.stop(10)
        sim.stop()
    assert flow.returncode is not None, log_path.read_text()


def test_people_act_on_alerts_and_models_through_the_secure_profile(secure_stack, tmp_path):
    """People's CLI with its own principal and role (operator): an acknowledgement and a rebaseline the
    policy allows are audited, applied and published; the same from a subject it does not allow is
    refused (exit 3), audited as denied, and nothing changes (migration 0155 lets the role do exactly that)."""
    from connectors.postgres.alert_sinks import AlertSink
    from connectors.postgres.audit import verify
    from tests.integration.test_alerts_cli import an_alert

    stack = secure_stack
    keys = _write_identity(tmp_path)
    twin = f"pump-act-{uuid.uuid4().hex[:6]}"
    alert = an_alert(twin)
    sink = AlertSink(stack.admin.postgres.conninfo()).open()
    sink.write([alert])
    sink.close()

    def cli(who: str, *args: str) -> subprocess.CompletedProcess:
        env = stack.role_env(
            "operator",
            TWINFLOW_SECURITY__SUBJECTS_FILE=str(tmp_path / "subjects.toml"),
            TWINFLOW_SECURITY__POLICY_FILE=str(tmp_path / "policy.toml"),
            TWINFLOW_SECURITY__KEY_FILE=str(keys[who]),
            COLUMNS="200",
        )
        return subprocess.run(
            [sys.executable, "-m", "twinflow.cli.main", *args], env=env, capture_output=True, text=True, timeout=90
        )

    denied = cli("mallory", "alerts", "ack", alert.alert_id)
    assert denied.returncode == 3 and "denied: no_matching_rule" in denied.stderr, denied.stdout + denied.stderr
    denied = cli("mallory", "model", "rebaseline", twin, "--reason", "new impeller")
    assert denied.returncode == 3 and "denied: no_matching_rule" in denied.stderr, denied.stdout + denied.stderr
    listed = cli("ann", "alerts", "list", "--twin", twin, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["state"] == "open", listed.stdout + listed.stderr

    acked = cli("ann", "alerts", "ack", alert.alert_id)
    assert acked.returncode == 0 and "acknowledged by ann" in acked.stdout, acked.stdout + acked.stderr
    rebaselined = cli("ann", "model", "rebaseline", twin, "--reason", "new impeller")
    assert rebaselined.returncode == 0, rebaselined.stdout + rebaselined.stderr
    shelved = cli("ann", "alerts", "shelve", alert.alert_id, "--for", "1h", "--reason", "known")
    assert shelved.returncode == 3 and "action_not_allowed" in shelved.stderr, shelved.stdout + shelved.stderr

    admin = stack.admin
    with psycopg.connect(admin.postgres.conninfo()) as db:
        audit = db.execute(
            "SELECT actor, new->>'action', decision, reason FROM desired_audit WHERE twin_id = %s ORDER BY id", (twin,)
        ).fetchall()
        state = db.execute("SELECT state, acked_by FROM alerts WHERE alert_id = %s", (alert.alert_id,)).fetchone()
        assert verify(db).broken is None
    assert audit == [
        ("mallory", "alert.ack", "deny", "no_matching_rule"),
        ("mallory", "model.rebaseline", "deny", "no_matching_rule"),
        ("ann", "alert.ack", "allow", "allowed"),
        ("ann", "model.rebaseline", "allow", "allowed"),
        ("ann", "alert.shelve", "deny", "action_not_allowed"),
    ]
    assert state == ("acknowledged", "ann")
    published = [r for r in read_topic(admin, admin.alerts.actions_topic) if r.key == twin.encode()]
    assert len(published) == 1
    control = [r for r in read_topic(admin, admin.topics.model_control) if r.key == twin.encode()]
    assert len(control) == 1
