from datetime import UTC, datetime
from types import SimpleNamespace

import orjson

from operators.telemetry.ingest import Limits, TelemetryRow, split_batch

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def msg(value, key=b"p1", offset=0):
    return SimpleNamespace(key=key, value=value, topic="telemetry.raw", partition=3, offset=offset)


def env(seq, **readings):
    return orjson.dumps(
        {
            "v": 1,
            "twin_id": "p1",
            "ts": "2026-11-25T07:59:00Z",
            "seq": seq,
            "source": "sim",
            "readings": readings,
            "quality": "uncertain",
        }
    )


def test_every_message_becomes_rows_or_exactly_one_dead_letter():
    batch = [
        msg(env(1, rpm=1.0, temp=2.0), offset=10),
        msg(b"garbage", offset=11),
        msg(env(2, rpm=3.0), offset=12),
    ]
    out = split_batch(batch, Limits(), now=NOW)
    ts = datetime(2026, 11, 25, 7, 59, tzinfo=UTC)
    assert out.rows == [
        TelemetryRow("p1", "rpm", ts, 1.0, 1, 1, "sim"),
        TelemetryRow("p1", "temp", ts, 2.0, 1, 1, "sim"),
        TelemetryRow("p1", "rpm", ts, 3.0, 2, 1, "sim"),
    ]
    assert len(out.dead) == 1
    dead = out.dead[0]
    assert (dead.value, dead.reason, dead.offset, dead.partition) == (b"garbage", "bad_json", 11, 3)
    headers = dict(dead.headers())
    assert headers["dlq.reason"] == b"bad_json"
    assert headers["dlq.offset"] == b"11"
    assert headers["dlq.topic"] == b"telemetry.raw"


def test_limits_apply():
    out = split_batch([msg(env(1, rpm=1.0))], Limits(max_bytes=20), now=NOW)
    assert [d.reason for d in out.dead] == ["too_large"]
    assert out.rows == []


def test_envelopes_only_skips_the_rows_but_not_the_checks():
    batch = [msg(env(1, rpm=1.0, temp=2.0)), msg(b"garbage", offset=11)]
    full = split_batch(batch, Limits(), now=NOW)
    lean = split_batch(batch, Limits(), now=NOW, rows=False)
    assert lean.rows == [] and len(full.rows) == 2
    assert lean.envelopes == full.envelopes and [e.seq for e in lean.envelopes] == [1]
    assert [d.reason for d in lean.dead] == [d.reason for d in full.dead] == ["bad_json"]
