"""`twinflow model rebaseline` from the outside: audited in the hash chain first (real PostgreSQL),
then a record on twin.model_control (real Kafka); nothing is sent when it cannot be audited."""

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
    assert "audit row" in res.output
    with psycopg.connect(private_db.postgres.conninfo()) as conn:
        row = conn.execute("SELECT actor, twin_id, new, decision, reason, detail FROM desired_audit").fetchone()
        assert verify(conn).broken is None
    assert row[1:] == (
        twin,
        {"action": "model.rebaseline", "sensor": "vibration_mm_s"},
        "allow",
        "model rebaseline",
        "WO-77 bearing",
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
    assert res.exit_code == 1 and "not sent" in res.output
    assert records(stack_settings, topic, wait_s=3) == []


def test_a_reason_is_required_and_the_twin_id_checked():
    assert CliRunner().invoke(app, ["model", "rebaseline", "pump-001", "--reason", " "]).exit_code == 2
    assert CliRunner().invoke(app, ["model", "rebaseline", "no spaces", "--reason", "x"]).exit_code == 2
