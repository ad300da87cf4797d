"""`twinflow model rebaseline|reset|event` from the outside: authorized by the policy file's `models`
rules and the decision audited in the hash chain first (real PostgreSQL), then a record on
twin.model_control or twin.events (real Kafka); nothing is sent when denied or when it cannot be audited."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from confluent_kafka import Consumer
from typer.testing import CliRunner

from connectors.kafka.clients import client_config
from connectors.postgres.audit import verify
from operators.records.model_control import decode
from twinflow.cli.main import app

pytestmark = pytest.mark.integration


def records(settings, topic: str, wait_s: float = 20.0) -> list:
    consumer = Consumer(
        client_config(settings, **{"group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    )
    consumer.subscribe([topic])
    out = []
    try:
        for _ in range(int(wait_s)):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                out.append(msg)
                break
        return out
    finally:
        consumer.close()


def test_rebaseline_is_audited_then_published(private_db, monkeypatch):
    topic = f"twin.model_control.test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TWINFLOW_TOPICS__MODEL_CONTROL", topic)
    monkeypatch.setenv("TWINFLOW_POSTGRES__DBNAME", private_db.postgres.dbname)
    twin = f"pump-{uuid.uuid4().hex[:6]}"
    res = CliRunner().invoke(
        app, ["model", "rebaseline", twin, "--sensor", "vibration_mm_s", "--reason", "WO-77 bearing"]
    )
    assert res.exit_code == 0, res.output
    assert "rebaseline by rule local development" in res.output and "audited" in res.output
    with psycopg.connect(private_db.postgres.conninfo()) as conn:
        row = conn.execute("SELECT actor, twin_id, new, decision, reason, detail FROM desired_audit").fetchone()
        assert verify(conn).broken is None
    assert row[1:] == (
        twin,
        {"action": "model.rebaseline", "sensor": "vibration_mm_s", "reason": "WO-77 bearing"},
        "allow",
        "allowed",
        "rebaseline by rule local development: operators operate every twin",
    )
    [msg] = records(private_db, topic)
    assert msg.key() == twin.encode()
    rec = decode(msg.value())
    assert (rec.action, rec.sensor, rec.reason, rec.requested_by) == (
        "rebaseline",
        "vibration_mm_s",
        "WO-77 bearing",
        row[0],
    )


def test_nothing_is_sent_when_it_cannot_be_audited(stack_settings, monkeypatch):
    topic = f"twin.model_control.test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TWINFLOW_TOPICS__MODEL_CONTROL", topic)
    monkeypatch.setenv("TWINFLOW_POSTGRES__DBNAME", f"no_such_db_{uuid.uuid4().hex[:6]}")
    res = CliRunner().invoke(app, ["model", "rebaseline", "pump-001", "--reason", "new impeller"])
    assert res.exit_code == 1 and "not taken: the decision could not be audited" in res.output
    assert records(stack_settings, topic, wait_s=3) == []


def test_a_reason_is_required_and_the_twin_id_checked():
    assert CliRunner().invoke(app, ["model", "rebaseline", "pump-001", "--reason", " "]).exit_code == 2
    assert CliRunner().invoke(app, ["model", "rebaseline", "no spaces", "--reason", "x"]).exit_code == 2


POLICY_WITHOUT_MODELS = """
[[rule]]
name = "operators set speeds and acknowledge"
subject = { roles = "operator" }
alerts = ["ack"]
[rule.parameters]
speed_sp_rpm = { min = 0, max = 3000 }

[[rule]]
name = "reliability engineers record repairs"
subject = { roles = "reliability" }
models = ["repair", "failure"]
"""


def test_model_control_is_denied_without_a_models_rule_and_nothing_is_sent(private_db, monkeypatch, tmp_path):
    """The local subject (roles operator, engineer) under a policy whose only `models` rule is another
    role's: reset, rebaseline and a repair event are each refused (exit 3, the reason), audited as
    denied, and nothing reaches Kafka; the same commands with a rule for the subject go through."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY_WITHOUT_MODELS)
    control, events = (f"twin.{t}.test-{uuid.uuid4().hex[:8]}" for t in ("model_control", "events"))
    monkeypatch.setenv("TWINFLOW_SECURITY__POLICY_FILE", str(policy))
    monkeypatch.setenv("TWINFLOW_TOPICS__MODEL_CONTROL", control)
    monkeypatch.setenv("TWINFLOW_TOPICS__EVENTS", events)
    monkeypatch.setenv("TWINFLOW_POSTGRES__DBNAME", private_db.postgres.dbname)
    twin = f"pump-{uuid.uuid4().hex[:6]}"
    commands = [
        ["model", "reset", twin],
        ["model", "rebaseline", twin, "--reason", "new impeller"],
        ["model", "event", twin, "--kind", "repair", "--note", "WO-12"],
    ]
    for args in commands:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 3, res.output
        assert "denied: no_matching_rule" in " ".join(res.output.split()), res.output
    assert records(private_db, control, wait_s=3) == [] and records(private_db, events, wait_s=2) == []
    with psycopg.connect(private_db.postgres.conninfo()) as conn:
        rows = conn.execute("SELECT new->>'action', decision, reason FROM desired_audit ORDER BY id").fetchall()
        assert verify(conn).broken is None
    assert rows == [(a, "deny", "no_matching_rule") for a in ("model.reset", "model.rebaseline", "model.repair")]

    policy.write_text(POLICY_WITHOUT_MODELS.replace('roles = "reliability"', 'roles = "engineer"'))
    res = CliRunner().invoke(app, commands[2])
    assert res.exit_code == 0, res.output
    [msg] = records(private_db, events)
    assert msg.key() == twin.encode()
    res = CliRunner().invoke(app, commands[0])  # a repair is granted to engineers, a reset is not
    assert res.exit_code == 3 and "action_not_allowed" in res.output, res.output
