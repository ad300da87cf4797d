"""MappedMqttBridge on recorded messages: shared topics, report by exception, metric selection by
name, booleans beside numbers, topic templates, bad values and timestamps dead-lettered alone with
the device's bytes."""

from __future__ import annotations

import orjson

from connectors.bridges.mapping.loading import parse_mapping
from connectors.mqtt.mapped import MappedMqttBridge
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
            "params": {"speed_rpm": {"path": "a.rpm"}, "temp_c": {"path": "a.temp"}, "running": {"path": "a.on"}},
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
        # Metrics selected by name (report by exception: only what changed is in the message).
        {
            "twin_id": "pump-c",
            "type": "pump",
            "protocol": "mqtt",
            "topic": "plant/c",
            "ts_format": "epoch_ms",
            "params": {
                "temp_c": {"path": "metrics[name=temp].value"},
                "speed_rpm": {"path": "metrics[name=rpm].value"},
                "mode": {"path": "mode", "type": "text"},
            },
        },
        # A plain number or boolean on its own topic.
        {"twin_id": "pump-d", "type": "pump", "protocol": "mqtt", "topic": "plant/d/temp", "params": {"temp_c": {}}},
        # A plain text on its own topic (Tasmota POWER, a gateway's state).
        {
            "twin_id": "pump-e",
            "type": "pump",
            "protocol": "mqtt",
            "topic": "plant/e/state",
            "params": {"state": {"type": "text"}},
        },
        # One asset for every machine of a line.
        {
            "twin_id": "{line}-{machine}",
            "type": "pump",
            "protocol": "mqtt",
            "topic": "lines/{line}/{machine}/state",
            "command_topic": "lines/{line}/{machine}/cmd",
            "params": {"speed_rpm": {"path": "rpm"}, "speed_sp_rpm": {"path": "sp", "writable": True}},
        },
    ]
}


class Msg:
    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


def run(*messages: tuple[str, bytes]) -> tuple[MappedMqttBridge, list, list]:
    pub = RecordingPublisher()
    b = MappedMqttBridge(Settings(), parse_mapping(MAPPING), publisher=pub, commands=False)  # type: ignore[arg-type]
    broker = b.brokers["mqtt"]
    for topic, payload in messages:
        b._on_message(broker, Msg(topic, payload))
    raw = [(r[1], orjson.loads(r[2])) for r in pub.records if r[0] == "telemetry.raw"]
    dead = [(r[1], r[2], dict(r[3])) for r in pub.records if r[0] == "telemetry.dlq"]
    return b, raw, dead


def test_a_shared_topic_feeds_two_twins_with_their_own_meta() -> None:
    payload = b'{"a":{"rpm":1450.0,"temp":65.2,"on":true,"ts":"2026-11-25T08:00:00.123Z","q":"uncertain"},"flow":12}'
    _, raw, dead = run(("plant/shared", payload))
    assert [(k, e["readings"], e["quality"]) for k, e in raw] == [
        (b"pump-a", {"speed_rpm": 1450.0, "temp_c": 65.2, "running": True}, "uncertain"),
        (b"pump-b", {"flow_m3h": 12}, "good"),
    ]
    assert raw[0][1]["ts"] == "2026-11-25T08:00:00.123000+00:00" and not dead


def test_metrics_are_selected_by_name_not_by_position() -> None:
    only_rpm = b'{"ts":1767225600000,"metrics":[{"name":"rpm","value":1452}],"mode":"AUTO"}'
    _, raw, _ = run(("plant/c", only_rpm))
    ((_, env),) = raw
    assert env["readings"] == {"speed_rpm": 1452} and env["text"] == {"mode": "AUTO"}
    assert env["ts"] == "2026-01-01T00:00:00+00:00"


def test_a_bad_value_is_dead_lettered_alone_with_the_original_bytes() -> None:
    payload = b'{"a":{"rpm":"fast","temp":30.8,"on":true}}'
    _, raw, dead = run(("plant/shared", payload))
    assert [e["readings"] for k, e in raw if k == b"pump-a"] == [{"temp_c": 30.8, "running": True}]
    ((key, value, headers),) = dead
    assert key == b"pump-a" and value == payload
    assert headers["dlq.field"] == b"readings.speed_rpm" and headers["mqtt.topic"] == b"plant/shared"
    assert headers["dlq.detail"].startswith(b"readings.speed_rpm: str 'fast' is not a number or a boolean")


def test_an_unreadable_timestamp_is_dead_lettered_never_replaced() -> None:
    bad_ts = b'{"a":{"rpm":1,"ts":"yesterday"}}'
    _, raw, dead = run(("plant/shared", bad_ts), ("plant/c", b'{"ts":"2026-01-01T00:00:00Z","mode":"x"}'))
    assert raw == []
    assert next((h["dlq.reason"], h["dlq.field"], v) for _, v, h in dead) == (b"ts_invalid", b"ts", bad_ts)
    assert dead[1][2]["dlq.reason"] == b"ts_invalid"  # epoch_ms only for pump-c


def test_plain_payloads_and_unmappable_ones() -> None:
    b, raw, dead = run(
        ("plant/d/temp", b"21.5"), ("plant/d/temp", b"true"), ("plant/d/temp", b"hot"), ("plant/x", b"{}")
    )
    assert [e["readings"] for _, e in raw] == [{"temp_c": 21.5}, {"temp_c": True}]
    assert [(h["dlq.reason"], v) for _, v, h in dead] == [(b"schema", b"hot")]
    assert b.unmapped == 1


def test_topic_templates_build_twin_ids_and_command_topics() -> None:
    b, raw, _ = run(("lines/l1/press-4/state", b'{"rpm":900}'), ("lines/l2/saw-1/state", b'{"rpm":50}'))
    assert [(k, e["twin_id"], e["readings"]) for k, e in raw] == [
        (b"l1-press-4", "l1-press-4", {"speed_rpm": 900}),
        (b"l2-saw-1", "l2-saw-1", {"speed_rpm": 50}),
    ]
    writable = b.writable()
    assert writable("l1-press-4") == {"speed_rpm": False, "speed_sp_rpm": True} and writable("nope") is None
    asset, vars_ = b._asset_vars("l1-press-4")
    assert asset.command_topic.format(**vars_) == "lines/l1/press-4/cmd"
    assert "lines/+/+/state" in b.brokers["mqtt"].routes.subscriptions


def test_a_topic_that_builds_no_valid_twin_id_is_dead_lettered() -> None:
    _, raw, dead = run(("lines/line 1/press/state", b'{"rpm":900}'))
    assert raw == [] and [(v, h["dlq.reason"]) for _, v, h in dead] == [(b'{"rpm":900}', b"schema")]
    assert b"not a valid twin id" in dead[0][2]["dlq.detail"]


def test_plain_text_payloads_of_a_text_parameter() -> None:
    _, raw, dead = run(*(("plant/e/state", p) for p in (b"running\n", b'"stopped"', b"12", b"\xff\xfe", b"")))
    assert [(e.get("text"), e["readings"]) for _, e in raw] == [
        ({"state": "running"}, {}),
        ({"state": "stopped"}, {}),
        (None, {"state": 12.0}),
    ]
    assert [(v, h.get("dlq.field")) for _, v, h in dead] == [
        (b"\xff\xfe", b"readings.state"),
        (b"", None),
    ]
    assert dead[0][2]["dlq.detail"] == b"readings.state: the payload is not UTF-8 text"
