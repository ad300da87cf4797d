"""MappedMqttBridge: the precomputed JSON-topic path gives the same envelopes as the general path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from connectors.mqtt.mapped import MappedMqttBridge
from twinflow.mapping import parse_mapping
from twinflow.settings import Settings


class RecordingPublisher:
    """Stands in for the Kafka publisher: keeps what the bridge hands over."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def put(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.records.append((topic, key, value, list(headers or [])))


MAPPING = {
    "assets": [
        # Two assets share one JSON topic; one with nested paths and its own ts/quality paths.
        {
            "twin_id": "pump-a",
            "type": "pump",
            "protocol": "mqtt",
            "topic": "plant/shared",
            "params": {"speed_rpm": {"path": "a.rpm"}, "temp_c": {"path": "a.temp"}},
            "ts_path": "a.ts",
            "quality_path": "a.q",
        },
        {
            "twin_id": "pump-b",
            "type": "pump",
            "protocol": "mqtt",
            "topic": "plant/shared",
            "params": {"flow_m3h": {"path": "flow"}, "head_m": {"path": "list.1"}},
        },
        # A JSON topic and a plain-number topic (general path) of one asset.
        {
            "twin_id": "pump-c",
            "type": "pump",
            "protocol": "mqtt",
            "topic": "plant/c",
            "params": {"speed_rpm": {"path": "rpm"}, "temp_c": {"topic": "plant/c/temp"}},
        },
        # A plain number on its own topic.
        {
            "twin_id": "pump-d",
            "type": "pump",
            "protocol": "mqtt",
            "topic": "plant/d/temp",
            "params": {"temp_c": {}},
        },
    ]
}

PAYLOADS: list[tuple[str, bytes]] = [
    ("plant/shared", b'{"a":{"rpm":1450.0,"temp":65.2,"ts":"2026-11-25T08:00:00.123Z","q":"uncertain"},"flow":12}'),
    ("plant/shared", b'{"a":{"rpm":1450.0,"ts":"2026-11-25T08:00:00.123Z","q":"weird"},"list":[1,2.5]}'),
    ("plant/shared", b'{"a":{"rpm":1,"ts":1767225600000}}'),
    ("plant/shared", b'{"flow":3,"ts":"2026-11-25T08:00:01Z"}'),
    ("plant/shared", b'{"a":{"rpm":"not a number","ts":"garbage"}}'),
    ("plant/shared", b'{"nothing":1}'),
    ("plant/shared", b"not json"),
    ("plant/shared", b"[1,2]"),
    ("plant/c", b'{"rpm":7,"ts":"2026-11-25T08:00:02Z","quality":"bad"}'),
    ("plant/c/temp", b"21.5"),
    ("plant/c/temp", b"{}"),
    ("plant/d/temp", b"21.5"),
    ("plant/d/temp", b"nan"),
    ("plant/unknown", b"{}"),
]


# The timestamps the payloads carry, as the envelope writes them; any other ts is the receive time.
SOURCE_TS = {
    "2026-11-25T08:00:00.123000+00:00",
    "2026-11-25T08:00:01+00:00",
    "2026-11-25T08:00:02+00:00",
    "2026-01-01T00:00:00+00:00",
}


class Msg:
    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


def bridge() -> tuple[MappedMqttBridge, RecordingPublisher]:
    pub = RecordingPublisher()
    b = MappedMqttBridge(Settings(), parse_mapping(MAPPING), publisher=pub, commands=False)  # type: ignore[arg-type]
    return b, pub


def comparable(rec: tuple[str, bytes | None, bytes, list[tuple[str, bytes]]], payload: bytes) -> Any:
    """A record without the parts that legitimately differ between two runs (seq; receive-time ts)."""
    topic, key, value, headers = rec
    try:
        env = orjson.loads(value)
    except orjson.JSONDecodeError:
        return (topic, key, value, headers)
    if not isinstance(env, dict) or "seq" not in env:
        return (topic, key, value, headers)
    env.pop("seq")
    if env["ts"] not in SOURCE_TS:
        env["ts"] = "receive time"
    return (topic, key, env, headers)


@pytest.mark.parametrize("topic,payload", PAYLOADS)
def test_fast_path_matches_general_path(topic: str, payload: bytes) -> None:
    fast, fast_pub = bridge()
    general, general_pub = bridge()
    general._json_routes.clear()  # force every topic through the general path
    for _ in range(2):  # twice: the second time through the timestamp caches
        fast._on_message(None, None, Msg(topic, payload))
        general._on_message(None, None, Msg(topic, payload))
    assert [comparable(r, payload) for r in fast_pub.records] == [comparable(r, payload) for r in general_pub.records]
    assert (fast.received, fast.unmapped, fast.values) == (general.received, general.unmapped, general.values)


def test_fast_path_is_taken_for_json_topics_only() -> None:
    b, _ = bridge()
    assert set(b._json_routes) == {"plant/shared", "plant/c"}
    assert [twin for twin, _ in b._json_routes["plant/shared"]] == ["pump-a", "pump-b"]


def test_envelope_fields_from_a_shared_topic() -> None:
    b, pub = bridge()
    b._on_message(None, None, Msg(*PAYLOADS[0]))
    envs = [orjson.loads(r[2]) for r in pub.records]
    assert [(e["twin_id"], e["readings"], e["quality"], e["ts"]) for e in envs] == [
        ("pump-a", {"speed_rpm": 1450.0, "temp_c": 65.2}, "uncertain", "2026-11-25T08:00:00.123000+00:00"),
        ("pump-b", {"flow_m3h": 12}, "good", envs[1]["ts"]),
    ]
    assert [r[1] for r in pub.records] == [b"pump-a", b"pump-b"]
    assert all(r[3] == [("bridge", b"mqtt")] for r in pub.records)
