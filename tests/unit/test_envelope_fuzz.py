"""Property-based fuzzing of the envelope decoder: it never raises anything but Rejected,
and every envelope it accepts round-trips through encode/decode unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.records.envelope import MAX_READINGS, Envelope, Rejected, decode, encode
from operators.telemetry.guard import IngestGuard
from operators.telemetry.ingest import Limits, split_batch

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
twin_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,40}\Z")
sensors = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,20}\Z")
envelopes = st.builds(
    Envelope,
    v=st.just(1),
    twin_id=twin_ids,
    ts=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
    ),
    seq=st.integers(0, 2**63 - 1),
    source=st.from_regex(r"\A[a-z][a-z0-9_-]{0,31}\Z"),
    readings=st.dictionaries(
        sensors, st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=MAX_READINGS
    ),
    quality=st.sampled_from(["good", "uncertain", "bad"]),
)


def only_rejected(raw: bytes | None, key: bytes | None = None) -> None:
    try:
        decode(raw, key=key, now=NOW)
    except Rejected as exc:
        assert exc.reason.value and isinstance(exc.detail, str)


@FUZZ
@given(st.binary(max_size=512), st.none() | st.binary(max_size=200))
def test_arbitrary_bytes_are_decoded_or_rejected(raw, key):
    only_rejected(raw, key)


@FUZZ
@given(json_values)
def test_arbitrary_json_is_decoded_or_rejected(value):
    only_rejected(json.dumps(value).encode())  # stdlib: also NaN, Infinity and huge integers


@FUZZ
@given(
    envelopes,
    st.sampled_from(["v", "twin_id", "ts", "seq", "source", "readings", "quality", "x"]),
    json_values,
)
def test_one_mutated_field_is_decoded_or_rejected(env, field, value):
    body = orjson.loads(encode(env))
    body[field] = value
    only_rejected(json.dumps(body).encode(), env.twin_id.encode())


@FUZZ
@given(envelopes, st.integers(0, 300), st.binary(min_size=1, max_size=8))
def test_byte_level_corruption_is_decoded_or_rejected(env, at, junk):
    raw = encode(env)
    at %= len(raw)
    only_rejected(raw[:at] + junk + raw[at + len(junk) :])


@FUZZ
@given(envelopes)
def test_accepted_envelopes_round_trip(env):
    raw = encode(env)
    back = decode(raw, key=env.twin_id.encode())
    assert back == env
    assert encode(back) == raw
    # the JSON a device would write (any key order, ints for whole numbers) decodes to the same
    body = orjson.loads(raw)
    assert decode(orjson.dumps(dict(reversed(list(body.items()))))) == env


@FUZZ
@given(st.lists(st.tuples(st.none() | twin_ids.map(str.encode), st.none() | st.binary(max_size=300)), max_size=20))
def test_split_batch_accounts_for_every_message(pairs):
    class Msg:
        def __init__(self, i, key, value):
            self.key, self.value, self.topic, self.partition, self.offset = key, value, "t", 0, i

    ts = (NOW - timedelta(seconds=1)).isoformat()
    good = [orjson.dumps({"v": 1, "twin_id": "p", "ts": ts, "seq": 1, "source": "s", "readings": {"a": 1.0}})]
    msgs = [Msg(i, k, v) for i, (k, v) in enumerate(pairs)] + [Msg(99, b"p", good[0])]
    out = split_batch(msgs, Limits(), now=NOW, guard=IngestGuard())
    kept = len({r.seq for r in out.rows if r.twin_id == "p"})
    assert len(out.dead) + out.absorbed + len({(r.twin_id, r.seq) for r in out.rows}) == len(msgs)
    assert kept == 1
