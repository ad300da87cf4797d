"""Malformed messages land in the DLQ with a reason; valid ones between them all land."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from tests.kafka_helpers import produce, read_topic, run_flow_to_end

pytestmark = pytest.mark.integration


def _env(twin: str, seq: int, **over) -> dict:
    ts = datetime.now(UTC) - timedelta(seconds=60) + timedelta(milliseconds=seq)
    body = {
        "v": 1,
        "twin_id": twin,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "seq": seq,
        "source": "test",
        "readings": {"rpm": 1000.0 + seq, "temp_c": 50.5},
    }
    body.update(over)
    return body


def malformed(twin: str) -> list[tuple[str, bytes | None, bytes | None, str]]:
    """(kind, key, value, expected reason) — at least 20 kinds."""
    k = twin.encode()
    base = _env(twin, 999)

    def with_(**over) -> bytes:
        return orjson.dumps({**base, **over})

    def without(field: str) -> bytes:
        return orjson.dumps({f: v for f, v in base.items() if f != field})

    return [
        ("truncated json", k, b'{"v":1,"twin_id":', "bad_json"),
        ("not json", k, b"hello world", "bad_json"),
        ("non utf-8", k, b"\xff\xfe\xfd\x00garbage", "bad_json"),
        ("NaN literal", k, orjson.dumps(base).replace(b"1999.0", b"NaN"), "bad_json"),
        ("empty value", k, b"", "bad_json"),
        ("tombstone", k, None, "schema"),
        ("json array", k, b"[1,2,3]", "schema"),
        ("json number", k, b"42", "schema"),
        ("missing twin_id", k, without("twin_id"), "schema"),
        ("missing ts", k, without("ts"), "schema"),
        ("missing readings", k, without("readings"), "schema"),
        ("missing seq", k, without("seq"), "schema"),
        ("wrong version", k, with_(v=2), "schema"),
        ("ts not a date", k, with_(ts="yesterday"), "schema"),
        ("ts without zone", k, with_(ts="2026-11-25T08:00:00"), "schema"),
        ("reading is string", k, with_(readings={"rpm": "fast"}), "schema"),
        ("reading is bool", k, with_(readings={"rpm": True}), "schema"),
        ("reading overflows to inf", k, orjson.dumps(base).replace(b"1999.0", b"1e999"), "schema"),
        ("empty readings", k, with_(readings={}), "schema"),
        ("negative seq", k, with_(seq=-5), "schema"),
        ("seq is string", k, with_(seq="7"), "schema"),
        ("bad quality", k, with_(quality="great"), "schema"),
        ("unknown field", k, with_(extra="x"), "schema"),
        ("sql in twin_id", k, with_(twin_id="x'; DROP TABLE telemetry;--"), "schema"),
        ("deep nesting", k, b"[" * 5000 + b"]" * 5000, "schema"),
        ("huge payload", k, with_(readings={"rpm": 1.0}, pad="x" * 100_000), "too_large"),
        ("far future ts", k, with_(ts="2099-01-01T00:00:00Z"), "ts_future"),
        ("ancient ts", k, with_(ts="1970-01-02T00:00:00Z"), "ts_too_old"),
        ("key differs from twin_id", b"someone-else", orjson.dumps(base), "key_mismatch"),
    ]


def test_malformed_messages_go_to_dlq_and_valid_ones_land(settings, unique):
    twin = f"dlq-{unique}"
    bad = malformed(twin)
    assert len({kind for kind, *_ in bad}) >= 20
    messages: list[tuple[bytes | None, bytes | None]] = []
    seq = 0
    for _kind, key, value, _reason in bad:
        seq += 1
        messages.append((twin.encode(), orjson.dumps(_env(twin, seq))))
        messages.append((key, value))
    seq += 1
    messages.append((twin.encode(), orjson.dumps(_env(twin, seq))))
    produce(settings, messages)

    run_flow_to_end(settings)

    dlq = read_topic(settings, settings.topics.dlq)
    assert len(dlq) == len(bad)
    by_value = {}
    for rec in dlq:
        by_value.setdefault(rec.value, []).append(rec)
    for kind, _key, value, reason in bad:
        recs = by_value.get(value)
        assert recs, f"{kind}: not found in the DLQ"
        rec = recs.pop()
        assert rec.headers["dlq.reason"].decode() == reason, kind
        assert rec.headers["dlq.detail"], kind
        assert rec.headers["dlq.topic"].decode() == settings.topics.raw
        assert int(rec.headers["dlq.offset"]) >= 0
        datetime.fromisoformat(rec.headers["dlq.rejected_at"].decode())

    with psycopg.connect(settings.postgres.conninfo()) as db:
        got = db.execute(
            "SELECT seq, sensor, value FROM telemetry WHERE twin_id = %s ORDER BY seq, sensor", (twin,)
        ).fetchall()
    expected = [
        (s, sensor, v) for s in range(1, seq + 1) for sensor, v in (("rpm", 1000.0 + s), ("temp_c", 50.5))
    ]
    assert got == expected
