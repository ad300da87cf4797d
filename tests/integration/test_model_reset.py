import uuid

import pytest
from confluent_kafka import Consumer
from typer.testing import CliRunner

from connectors.kafka.clients import client_config
from operators.records.model_control import decode
from twinflow.cli.main import app
from twinflow.settings import Settings


@pytest.mark.integration
def test_model_reset_publishes_a_record_keyed_by_twin(monkeypatch):
    topic = f"twin.model_control.test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TWINFLOW_TOPICS__MODEL_CONTROL", topic)
    twin = f"pump-{uuid.uuid4().hex[:6]}"
    res = CliRunner().invoke(app, ["model", "reset", twin])
    assert res.exit_code == 0, res.output

    consumer = Consumer(
        client_config(Settings(), **{"group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    )
    consumer.subscribe([topic])
    try:
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                break
        assert msg is not None and not msg.error()
        assert msg.key() == twin.encode()
        rec = decode(msg.value())
        assert rec.twin_id == twin and rec.action == "reset"
    finally:
        consumer.close()


@pytest.mark.integration
def test_model_reset_rejects_a_bad_twin_id():
    res = CliRunner().invoke(app, ["model", "reset", "no spaces allowed"])
    assert res.exit_code == 2


@pytest.mark.integration
def test_model_reset_refuses_a_twin_the_registry_does_not_know(tmp_path, monkeypatch):
    registry = tmp_path / "twins.toml"
    registry.write_text('[twin."pump-001"]\ntype = "pump"\n')
    topic = f"twin.model_control.test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TWINFLOW_TOPICS__MODEL_CONTROL", topic)
    monkeypatch.setenv("TWINFLOW_SECURITY__TWIN_REGISTRY", str(registry))
    res = CliRunner().invoke(app, ["model", "reset", "ghost-9"])
    assert res.exit_code == 1 and "unknown twin 'ghost-9'" in res.output, res.output
    assert CliRunner().invoke(app, ["model", "reset", "pump-001"]).exit_code == 0
