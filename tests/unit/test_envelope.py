from datetime import UTC, datetime, timedelta

import orjson
import pytest

from operators.envelope import Envelope, Reason, Rejected, decode, encode

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def valid(**over) -> dict:
    env = {
        "v": 1,
        "twin_id": "pump-001",
        "ts": "2026-11-25T08:00:00.123Z",
        "seq": 42,
        "source": "mqtt",
        "readings": {"rpm": 1450.0, "temp_c": 65.2},
        "quality": "good",
    }
    env.update(over)
    return env


def test_readme_example_round_trips():
    raw = orjson.dumps(valid())
    env = decode(raw, key=b"pump-001", now=NOW)
    assert env == Envelope(
        v=1,
        twin_id="pump-001",
        ts=datetime(2026, 11, 25, 8, 0, 0, 123000, tzinfo=UTC),
        seq=42,
        source="mqtt",
        readings={"rpm": 1450.0, "temp_c": 65.2},
        quality="good",
    )
    assert decode(encode(env)) == env


def test_quality_defaults_to_good_and_ints_are_floats():
    body = valid(readings={"rpm": 1450})
    del body["quality"]
    env = decode(orjson.dumps(body))
    assert env.quality == "good"
    assert env.readings == {"rpm": 1450.0}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", Reason.BAD_JSON),
        (b"\xff\xfe", Reason.BAD_JSON),
        (
            b'{"v":1,"twin_id":"p","ts":"2026-11-25T08:00:00Z","seq":1,"source":"m","readings":{"a":NaN}}',
            Reason.BAD_JSON,
        ),
        (orjson.dumps(valid(v=2)), Reason.SCHEMA),
        (orjson.dumps(valid(ts="2026-11-25T08:00:00")), Reason.SCHEMA),
        (orjson.dumps(valid(seq=-1)), Reason.SCHEMA),
        (orjson.dumps(valid(readings={})), Reason.SCHEMA),
        (orjson.dumps(valid(readings={"rpm": True})), Reason.SCHEMA),
        (orjson.dumps(valid(quality="excellent")), Reason.SCHEMA),
        (orjson.dumps(valid(twin_id="a b")), Reason.SCHEMA),
        (orjson.dumps(valid(extra=1)), Reason.SCHEMA),
        (
            b'{"v":1,"twin_id":"p","ts":"2026-11-25T08:00:00Z","seq":1,"source":"m","readings":{"a":1e999}}',
            Reason.SCHEMA,
        ),
        (orjson.dumps(valid(ts="2030-01-01T00:00:00Z")), Reason.TS_FUTURE),
        (orjson.dumps(valid(ts="1990-01-01T00:00:00Z")), Reason.TS_TOO_OLD),
        (orjson.dumps(valid(note="x" * 70000)), Reason.TOO_LARGE),
    ],
)
def test_rejections_carry_a_reason(raw, reason):
    with pytest.raises(Rejected) as exc:
        decode(raw, now=NOW, max_age=timedelta(days=3650))
    assert exc.value.reason == reason


def test_key_must_match_twin_id():
    with pytest.raises(Rejected) as exc:
        decode(orjson.dumps(valid()), key=b"pump-002")
    assert exc.value.reason == Reason.KEY_MISMATCH


def test_tombstone_is_rejected():
    with pytest.raises(Rejected) as exc:
        decode(None)
    assert exc.value.reason == Reason.SCHEMA
