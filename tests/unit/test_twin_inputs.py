"""Decoding the flow's mixed input batch; CLI argument parsing."""

from __future__ import annotations

from types import SimpleNamespace as Msg

import pytest
import typer

from operators.records.twin import AckEvent, DesiredEvent, Reported
from operators.telemetry.ingest import ReadingRules
from operators.twin.inputs import InputTopics, decode_batch
from twinflow.cli.twin import parse_assignments

TOPICS = InputTopics("raw", "desired", "acks")


def msg(topic: str, key: bytes | None, value: bytes | None, offset: int = 0, ts_ms: int = 1764057600000) -> Msg:
    return Msg(key=key, value=value, topic=topic, partition=0, offset=offset, timestamp=(1, ts_ms))


def env(twin: str, seq: int, ts: str = "2026-11-25T08:00:00Z") -> bytes:
    return (
        f'{{"v":1,"twin_id":"{twin}","ts":"{ts}","seq":{seq},"source":"mqtt","readings":{{"a":1.0,"b":2.0}}}}'
    ).encode()


def test_order_is_kept_and_every_bad_record_is_a_dead_letter_with_a_reason() -> None:
    batch = [
        msg("raw", b"p1", env("p1", 1)),
        msg("desired", b"p1", b'{"twin_id":"p1","values":{"speed":5},"issued_at":"2026-11-25T08:00:01Z"}'),
        msg("raw", b"p1", env("p1", 2, "2026-11-25T08:00:02Z")),
        msg("acks", b"p1", b'{"command_id":"p1:2:speed","status":"applied"}'),
        msg("desired", b"p2", b'{"twin_id":"p1","values":{"speed":5}}', offset=9),  # key mismatch
        msg("desired", b"p1", b'{"twin_id":"p1","values":{"speed":"fast"}}'),
        msg("acks", None, b'{"command_id":"x","status":"applied"}'),
        msg("acks", b"p1", b'{"command_id":"x","status":"done"}'),
        msg("raw", b"p1", b"{broken"),
    ]
    out = decode_batch(batch, TOPICS, ReadingRules())
    kinds = [type(ev) for _, ev in out.events]
    assert kinds == [Reported, DesiredEvent, Reported, AckEvent]
    assert [ev.seq for _, ev in out.events if isinstance(ev, Reported)] == [1, 2]
    assert out.events[1][1].at.isoformat() == "2026-11-25T08:00:01+00:00"
    assert out.events[3][1].at.timestamp() * 1000 == 1764057600000  # no applied_at: the Kafka time
    reasons = [(d.topic, d.reason) for d in out.dead_control]
    assert reasons == [
        ("desired", "key_mismatch"),
        ("desired", "schema"),
        ("acks", "schema"),
        ("acks", "schema"),
    ]
    assert out.dead_control[0].offset == 9 and "p2" in out.dead_control[0].detail
    assert [d.reason for d in out.dead_telemetry] == ["bad_json"]
    assert len(out.rows) == 4


def test_set_desired_assignments() -> None:
    assert parse_assignments(["speed=1200", " valve =0.5"]) == {"speed": 1200.0, "valve": 0.5}
    with pytest.raises(typer.BadParameter, match="param=value"):
        parse_assignments(["speed"])
    with pytest.raises(typer.BadParameter, match="not a finite number"):
        parse_assignments(["speed=fast"])
    with pytest.raises(typer.BadParameter, match="not a finite number"):
        parse_assignments(["speed=nan"])
