"""One rule set for a reading in every flow: telemetry, twin (with and without ingest) and models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace as Msg

from flows.readings import reading_rules
from operators.ml.inputs import ModelTopics
from operators.ml.inputs import decode_batch as model_decode
from operators.twin.inputs import InputTopics
from operators.twin.inputs import decode_batch as twin_decode
from twinflow.settings import Settings

NOW = datetime(2026, 11, 25, 8, 0, 5, tzinfo=UTC)


def raw(twin: str, seq: int, a: float = 1.0, offset: int = 0) -> Msg:
    value = (
        f'{{"v":1,"twin_id":"{twin}","ts":"2026-11-25T08:00:00Z","seq":{seq},"source":"mqtt","readings":{{"a":{a}}}}}'
    ).encode()
    return Msg(key=twin.encode(), value=value, topic="raw", partition=0, offset=offset, timestamp=(1, 0))


def settings(tmp_path: Path) -> Settings:
    registry = tmp_path / "twins.toml"
    registry.write_text('[twin."p1"]\ntype = "pump"\n')
    return Settings(
        security={"twin_registry": registry, "max_dead_letter_bytes": 2048},
        flow={"max_message_bytes": 4096, "max_future_skew_s": 60, "max_age_days": 2},
    )


def test_the_limits_are_built_from_every_setting_that_names_one(tmp_path: Path) -> None:
    limits = reading_rules(settings(tmp_path)).limits
    assert (limits.max_bytes, limits.max_future_skew, limits.max_age, limits.max_dead_letter_bytes) == (
        4096,
        timedelta(seconds=60),
        timedelta(days=2),
        2048,
    )


def test_telemetry_twin_and_models_decoders_keep_the_same_readings(tmp_path: Path) -> None:
    """A redelivery, a conflicting duplicate and an unknown twin: only the first reading counts, in
    every flow (before, the twin and models flows had no guard and took all four)."""
    batch = [raw("p1", 1, offset=0), raw("p1", 1, offset=1), raw("p1", 1, a=2.0, offset=2), raw("x9", 1, offset=3)]
    s = settings(tmp_path)

    telemetry = reading_rules(s).split(batch, NOW)
    assert [(r.twin_id, r.value) for r in telemetry.rows] == [("p1", 1.0)]
    assert telemetry.absorbed == 1
    assert sorted(d.reason for d in telemetry.dead) == ["duplicate_seq", "unknown_twin"]

    for rows in (True, False):  # twin.ingest on and off: the same guard
        twin = twin_decode(batch, InputTopics("raw", "desired", "acks"), reading_rules(s), NOW, rows=rows)
        assert [(t, ev.values) for t, ev in twin.events] == [("p1", {"a": 1.0})]
        assert sorted(d.reason for d in twin.dead_telemetry) == ["duplicate_seq", "unknown_twin"]
        assert len(twin.rows) == (1 if rows else 0)

    models = model_decode(batch, ModelTopics("raw", "status", "control", "events"), reading_rules(s), NOW)
    assert [(t, [r.readings for r in items]) for t, items in models.items] == [("p1", [{"a": 1.0}])]
    assert models.dead == []  # the telemetry flow dead-letters readings, once


def test_bad_control_records_are_dead_lettered_in_one_convention(tmp_path: Path) -> None:
    """Original bytes cut to the dead-letter limit, the original headers passed on (models and twin)."""
    big = b"{" + b"x" * 5000
    headers = [("bridge", b"mqtt")]
    rules = reading_rules(settings(tmp_path))
    m = Msg(key=b"p1", value=big, topic="events", partition=0, offset=4, headers=headers)
    (d,) = model_decode([m], ModelTopics("raw", "status", "control", "events"), rules, NOW).dead
    assert (d.reason, d.truncated_from, len(d.value or b""), d.original_headers) == ("bad_json", 5001, 2048, headers)
    m = Msg(key=b"p1", value=big, topic="acks", partition=0, offset=4, headers=headers, timestamp=(1, 0))
    (d,) = twin_decode([m], InputTopics("raw", "desired", "acks"), rules, NOW).dead_control
    assert (d.truncated_from, len(d.value or b""), d.original_headers) == (5001, 2048, headers)


def test_a_batch_decoded_once_gives_every_part_what_its_own_decoding_gave(tmp_path: Path) -> None:
    """The pipeline flow decodes a batch once (one guard) and its ingest, twin and models parts split
    it their way: the same rows, dead letters, events and model items as three decodings."""
    partial = Msg(
        key=b"p1",
        value=b'{"v":1,"twin_id":"p1","ts":"2026-11-25T08:00:01Z","seq":2,"source":"mqtt","readings":{"a":3.0,"b":[1]}}',
        topic="raw",
        partition=0,
        offset=5,
        timestamp=(1, 0),
    )
    ack = Msg(key=b"p1", value=b'{"command_id":"p1:2:a","status":"applied"}', topic="acks", partition=0, offset=9,
              timestamp=(1, 1767225600000))  # fmt: skip
    batch = [raw("p1", 1, offset=0), raw("p1", 1, offset=1), ack, raw("p1", 1, a=2.0, offset=2), raw("x9", 1, offset=3),
             partial, Msg(key=b"p1", value=b"{oops", topic="raw", partition=0, offset=6)]  # fmt: skip
    s = settings(tmp_path)
    telemetry = [m for m in batch if m.topic == "raw"]
    decoded = reading_rules(s).decode(telemetry, NOW)

    assert decoded.split(telemetry) == reading_rules(s).split(telemetry, NOW)
    topics = InputTopics("raw", "desired", "acks")
    for rows in (True, False):
        assert twin_decode(batch, topics, decoded, NOW, rows=rows) == twin_decode(
            batch, topics, reading_rules(s), NOW, rows=rows
        )
    mtopics = ModelTopics("raw", "status", "control", "events")
    assert model_decode(batch, mtopics, decoded, NOW) == model_decode(batch, mtopics, reading_rules(s), NOW)
    split = decoded.split(telemetry)
    assert (len(split.rows), split.absorbed) == (2, 1)  # p1 seq 1 (a), seq 2 (a; b dead-lettered alone)
    assert sorted(d.reason for d in split.dead) == ["bad_json", "duplicate_seq", "schema", "unknown_twin"]
