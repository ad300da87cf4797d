import orjson

from connectors.mqtt.payload import PayloadMapper
from operators.envelope import decode


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


def test_non_objects_are_forwarded_unchanged_for_the_dlq():
    m = PayloadMapper()
    for raw in (b"12.5", b"[1,2]", b"\xff", b"{broken"):
        assert m.map("x/a/t", raw) == (b"a", raw)
