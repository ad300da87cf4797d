import orjson
import pytest

from connectors.mqtt.payload import PayloadMapper
from operators.records.envelope import Rejected, decode


def test_minimal_payload_becomes_a_valid_envelope():
    m = PayloadMapper(twin_level=1)
    key, value = m.map("plant/pump-9/telemetry", b'{"ts":"2026-11-25T08:00:00Z","readings":{"rpm":1}}')
    env = decode(value, key=key)
    assert (env.twin_id, env.source, env.readings) == ("pump-9", "mqtt", {"rpm": 1.0})


def test_generated_seq_rises_per_twin():
    m = PayloadMapper()
    seqs = [
        orjson.loads(m.map("x/a/t", b'{"ts":"2026-11-25T08:00:00Z","readings":{"r":1}}')[1])["seq"] for _ in range(3)
    ]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_payload_values_win_over_topic_defaults():
    m = PayloadMapper()
    _, value = m.map(
        "x/a/t", b'{"twin_id":"b","seq":7,"source":"opcua","ts":"2026-11-25T08:00:00Z","readings":{"r":1}}'
    )
    body = orjson.loads(value)
    assert (body["twin_id"], body["seq"], body["source"]) == ("b", 7, "opcua")


def test_what_cannot_be_an_envelope_is_rejected_with_a_reason():
    m = PayloadMapper()
    for raw, reason in ((b"12.5", "schema"), (b"[1,2]", "schema"), (b"\xff", "bad_json"), (b"{broken", "bad_json")):
        with pytest.raises(Rejected) as exc:
            m.map("x/a/t", raw)
        assert exc.value.reason == reason, raw


@pytest.mark.parametrize(
    ("ts", "fmt", "expected"),
    [
        ("2026-11-25T08:00:00Z", "auto", "2026-11-25T08:00:00+00:00"),
        ("2026-11-25T09:00:00+01:00", "iso", "2026-11-25T09:00:00+01:00"),
        (1764057600, "auto", "2025-11-25T08:00:00+00:00"),
        ("1764057600", "epoch_s", "2025-11-25T08:00:00+00:00"),
        (1764057600123, "auto", "2025-11-25T08:00:00.123000+00:00"),
        (1764057600123456, "epoch_us", "2025-11-25T08:00:00.123456+00:00"),
        ("1764057600123456", "auto", "2025-11-25T08:00:00.123456+00:00"),
    ],
)
def test_every_timestamp_form_of_the_policy(ts, fmt, expected):
    m = PayloadMapper(ts_format=fmt)
    _, value = m.map("x/a/t", orjson.dumps({"ts": ts, "readings": {"r": 1}}))
    assert orjson.loads(value)["ts"] == expected


@pytest.mark.parametrize(
    ("ts", "fmt"),
    [
        ("2026-11-25T08:00:00", "auto"),
        ("yesterday", "auto"),
        (1764057600, "iso"),
        ("2026-11-25T08:00:00Z", "epoch_ms"),
        (True, "auto"),
        (1e20, "auto"),
    ],
)
def test_an_unreadable_timestamp_is_rejected_never_replaced(ts, fmt):
    with pytest.raises(Rejected) as exc:
        PayloadMapper(ts_format=fmt).map("x/a/t", orjson.dumps({"ts": ts, "readings": {"r": 1}}))
    assert exc.value.reason == "ts_invalid" and exc.value.field == "ts"
