"""Batch-aware keyed steps: grouping a batch per twin changes nothing but the number of Bytewax items."""

from __future__ import annotations

import random
from datetime import timedelta
from types import SimpleNamespace as Msg

import orjson

from operators.keyed_batches import group_by_key
from operators.telemetry.ingest import ReadingRules
from operators.twin.event_windows import WindowSpec
from operators.twin.inputs import InputTopics, decode_batch
from operators.twin.processor import TwinProcessor
from operators.twin.sync_strategy import TwinPolicy
from tests.twin_helpers import T0, ack, at, desired, reading

TOPICS = InputTopics("raw", "desired", "acks")


def test_groups_keep_the_order_within_each_key() -> None:
    items = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)]
    assert group_by_key(items) == [("b", [1, 3]), ("a", [2, 5]), ("c", [4])]
    assert group_by_key([]) == []


def raw(twin: str, seq: int, s: float, quality: str = "good", **readings: float) -> Msg:
    body = {"v": 1, "twin_id": twin, "ts": at(s), "seq": seq, "source": "mqtt", "readings": readings}
    body["quality"] = quality
    return Msg(key=twin.encode(), value=orjson.dumps(body), topic="raw", partition=0, offset=seq, timestamp=(0, 0))


def test_events_without_rows_equal_the_events_built_from_rows() -> None:
    batch = [
        raw("p1", 1, 0.0, a=1.0, b=2.0),
        raw("p1", 1, 0.0, b=3.0, c=4.0),  # same (twin, ts, seq) right after: one event, merged
        raw("p2", 1, 0.0, a=5.0),
        raw("p1", 2, 1.0, quality="bad", a=6.0),
        Msg(
            key=b"p1",
            value=b'{"twin_id":"p1","values":{"a":1}}',
            topic="desired",
            partition=0,
            offset=1,
            timestamp=(1, 1764057600000),
        ),
        raw("p1", 2, 1.0, a=7.0),  # same identity, but not adjacent: its own event
        Msg(key=b"p1", value=b"{oops", topic="raw", partition=0, offset=9, timestamp=(0, 0)),
    ]
    now = T0 + timedelta(seconds=5)
    with_rows = decode_batch(batch, TOPICS, ReadingRules(), now)
    without = decode_batch(batch, TOPICS, ReadingRules(), now, rows=False)
    assert without.events == with_rows.events
    assert next(ev.values for _, ev in without.events if hasattr(ev, "values")) == {"a": 1.0, "b": 3.0, "c": 4.0}
    assert without.rows == [] and len(with_rows.rows) == 7
    assert without.dead_telemetry == with_rows.dead_telemetry and len(without.dead_telemetry) == 1


def test_processing_a_twins_group_equals_processing_its_events_one_by_one() -> None:
    policy = TwinPolicy.model_validate(
        {"defaults": {"parameters": {"speed": {"hold_time_s": 1.0, "tolerance": 1.0, "ack_timeout_s": 3}}}}
    )
    spec = WindowSpec((timedelta(seconds=1), timedelta(seconds=5)), timedelta(seconds=2))
    rng = random.Random(7)
    events = []
    for i in range(400):
        twin = f"t{rng.randrange(3)}"
        s = i * 0.25 + rng.uniform(-3, 0.5)  # out of order, some beyond the allowed lateness
        kind = rng.random()
        if kind < 0.8:
            ev = reading(s, 100.0 + rng.uniform(-3, 3), seq=i, temp=rng.uniform(20, 30))
        elif kind < 0.9:
            ev = desired(s, 100.0 + rng.choice([0.0, 10.0]), twin=twin)
        else:
            ev = ack(s, f"{twin}:{rng.randrange(1, 60)}:speed", rng.choice(["applied", "failed"]))
        events.append((twin, ev))
        if i % 50 == 49:
            events.append((twin, at(s + 10)))  # a clock tick

    one = TwinProcessor(policy, spec)
    by_one = {t: one.new(t) for t in ("t0", "t1", "t2")}
    expected: dict[str, list] = {t: [] for t in by_one}
    for twin, ev in events:
        expected[twin] += one.process(by_one[twin], ev)

    many = TwinProcessor(policy, spec)
    by_group = {t: many.new(t) for t in ("t0", "t1", "t2")}
    got: dict[str, list] = {t: [] for t in by_group}
    for start in range(0, len(events), 37):  # batches that split the twins' runs anywhere
        for twin, evs in group_by_key(events[start : start + 37]):
            got[twin] += many.process_many(by_group[twin], evs)

    assert got == expected
    assert all(len(v) > 50 for v in got.values())
    assert {t: many.flush(rt) for t, rt in by_group.items()} == {t: one.flush(rt) for t, rt in by_one.items()}
