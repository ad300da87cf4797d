"""Decoding the alerts flow's inputs: records, dead letters with reasons, non-inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from operators.records.alerts import AlertAction, AnomalyScore, DesyncEscalation, TwinStatus, decode_message, encode
from operators.telemetry.ingest import DeadLetter
from twinflow.settings import AlertSettings, ConfigError

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def msg(value: bytes | None, key: bytes | None = b"p1", topic: str = "t") -> SimpleNamespace:
    return SimpleNamespace(key=key, value=value, topic=topic, partition=0, offset=5)


def test_valid_records_of_each_topic_kind():
    score = AnomalyScore("p1", NOW, 2.0, 1.0, True, {"a": 1.0})
    assert decode_message("anomaly", msg(encode(score)), NOW) == score
    status = TwinStatus("p1", NOW, maintenance=True)
    assert decode_message("status", msg(encode(status)), NOW) == status
    act = AlertAction("al-1", "p1", "ack", "bob", NOW)
    assert decode_message("action", msg(encode(act)), NOW) == act


@pytest.mark.parametrize(
    ("kind", "value", "key", "reason"),
    [
        ("anomaly", b"{not json", b"p1", "bad_json"),
        ("anomaly", b'{"twin_id":"p1","ts":"2026-11-25T09:00:00Z","score":"high"}', b"p1", "schema"),
        ("anomaly", None, b"p1", "schema"),
        (
            "failure",
            b'{"twin_id":"p1","ts":"2026-11-25T09:00:00","rul_s":1,"failure_probability":0.1}',
            b"p1",
            "schema",
        ),  # no time zone
        ("status", b'{"twin_id":"p2","ts":"2026-11-25T09:00:00Z","maintenance":true}', b"p1", "key_mismatch"),
        ("desync", b'{"kind":"desync","twin_id":"p1"}', b"p1", "schema"),
        ("desync", b'{"kind":"desync","twin_id":"p1","at":"2026-11-25T09:00:00Z","version":3}', b"p2", "key_mismatch"),
        ("desync", b'{"kind":"drift","twin_id":"p1","at":"2026-11-25T09:00:00Z","version":3}', b"p1", "schema"),
        ("desync", b"{not json", b"p1", "bad_json"),
    ],
)
def test_bad_records_become_dead_letters_with_a_reason(kind, value, key, reason):
    out = decode_message(kind, msg(value, key), NOW)
    assert isinstance(out, DeadLetter)
    assert (out.reason, out.value, out.key, out.offset) == (reason, value, key, 5)


def test_desync_escalations_are_inputs_and_command_failures_are_not():
    at = b'"at":"2026-11-25T09:00:00Z","version":3'
    esc = decode_message("desync", msg(b'{"twin_id":"p1","kind":"desync",' + at + b',"detail":{"duration_s":30}}'), NOW)
    assert isinstance(esc, DesyncEscalation) and esc.detail == {"duration_s": 30}
    failed = b'{"twin_id":"p1","kind":"command_failed",' + at + b',"detail":{"attempts":3}}'
    assert decode_message("desync", msg(failed), NOW) is None


def test_webhook_secret_from_env_value_or_file(tmp_path):
    assert AlertSettings(webhook_secret="abc").webhook_key() == b"abc"
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert AlertSettings(webhook_secret_file=f).webhook_key() == b"from-file"
    with pytest.raises(ConfigError, match=r"webhook_secret_file=.*missing"):
        AlertSettings(webhook_secret_file=tmp_path / "missing").webhook_key()
    with pytest.raises(ConfigError, match="TWINFLOW_ALERTS__WEBHOOK_SECRET"):
        AlertSettings(webhook_url="http://x").webhook_key()
