from datetime import UTC, datetime, timedelta

import orjson
import pytest

from operators.records.envelope import Envelope, Reason, Rejected, decode, decode_partial, encode

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
        (orjson.dumps(valid(readings={"rpm": "fast"})), Reason.SCHEMA),
        (orjson.dumps(valid(readings={"rpm": None})), Reason.SCHEMA),  # no value needs a bad status
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


def test_booleans_and_numbers_side_by_side():
    env = decode(orjson.dumps(valid(readings={"flow": 12.5, "running": True, "count": 3})))
    assert env.readings == {"flow": 12.5, "running": True, "count": 3.0}
    assert type(env.readings["running"]) is bool and type(env.readings["count"]) is float


def test_bad_status_without_value_is_a_reading():
    body = valid(readings={"temp_c": None, "rpm": 1450.0}, status={"temp_c": "BadSensorFailure"})
    env = decode(orjson.dumps(body))
    assert env.readings["temp_c"] is None
    assert env.quality_of("temp_c") == "bad" and env.quality_of("rpm") == "good"
    assert decode(encode(env)) == env


def test_one_bad_value_keeps_its_siblings():
    body = valid(readings={"flow": 1.0, "mode": "auto", "x": None, "ok": False}, status={"ghost": "BadFoo"})
    env, bad = decode_partial(orjson.dumps(body))
    assert env.readings == {"flow": 1.0, "ok": False}
    assert env.status is None
    assert sorted(b.field for b in bad) == ["readings.mode", "readings.x", "status.ghost"]
    by_field = {b.field: b for b in bad}
    assert by_field["readings.mode"].detail == "readings.mode: str 'auto' is not a number, a boolean or null"
    assert by_field["readings.mode"].reason == Reason.SCHEMA
    with pytest.raises(Rejected) as exc:
        decode(orjson.dumps(body))
    assert exc.value.field in by_field


def test_a_message_whose_only_value_is_bad_is_rejected_naming_the_field():
    with pytest.raises(Rejected) as exc:
        decode_partial(orjson.dumps(valid(readings={"running": "yes"})))
    assert exc.value.field == "readings.running" and "readings.running: str" in exc.value.detail


def test_a_bad_status_name_is_rejected_but_the_reading_kept():
    env, bad = decode_partial(orjson.dumps(valid(readings={"a": 1.0}, status={"a": "Broken"})))
    assert env.readings == {"a": 1.0} and env.status is None
    assert [b.field for b in bad] == ["status.a"]


def test_values_whose_sum_overflows_are_all_kept():
    readings = {"a": 1e308, "b": 1e308, "c": -1e308, "on": True}
    env, bad = decode_partial(orjson.dumps(valid(readings=readings)))
    assert env.readings == readings and bad == []


def test_a_bad_name_among_names_seen_valid_before_is_found():
    decode(orjson.dumps(valid(readings={"rpm": 1.0, "temp_c": 2.0})))
    env, bad = decode_partial(orjson.dumps(valid(readings={"rpm": 1.0, "temp c": 2.0, "temp_c": 3.0})))
    assert env.readings == {"rpm": 1.0, "temp_c": 3.0} and [b.field for b in bad] == ["readings.temp c"]
