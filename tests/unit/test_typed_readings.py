"""Booleans and readings without a value through the operators: ingest rows, twin events, the
reconciler (boolean desired values) and the models (booleans are context, never scored)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace as Msg

import orjson

from operators.ml.config import AnomalyConfig, ForecastConfig, ModelConfig, OperatingPointConfig
from operators.ml.live_state import LiveModelConfig
from operators.ml.live_step import Reading, reading_of, step
from operators.records.twin import decode_desired
from operators.telemetry.ingest import Limits, ReadingRules, TelemetryRow, TypedRow, split_batch
from operators.twin.inputs import InputTopics, decode_batch
from tests.twin_helpers import Run, commands, desired, reading, reconciler

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def raw(readings: dict, seq: int = 1, **extra) -> Msg:
    body = {"v": 1, "twin_id": "p1", "ts": T0.isoformat(), "seq": seq, "source": "opcua", "readings": readings}
    body.update(extra)
    return Msg(key=b"p1", value=orjson.dumps(body), topic="raw", partition=0, offset=seq, headers=[])


def test_numbers_stay_plain_rows_and_typed_values_get_typed_rows() -> None:
    out = split_batch(
        [raw({"flow": 2.5, "running": False, "temp": None}, status={"temp": "BadSensorFailure"})], Limits()
    )
    by = {r.sensor: r for r in out.rows}
    assert type(by["flow"]) is TelemetryRow and by["flow"].value == 2.5
    assert by["running"] == TypedRow("p1", "running", T0, 0.0, 1, 0, "opcua", 1, None)
    assert by["temp"] == TypedRow("p1", "temp", T0, None, 1, 2, "opcua", 0, "BadSensorFailure")
    assert not out.dead


def test_text_values_get_text_rows_with_the_envelopes_quality() -> None:
    msg = raw({"flow": 1.0}, text={"mode": "auto"}, quality="uncertain")
    out = split_batch([msg], Limits())
    by = {r.sensor: r for r in out.rows}
    assert by["mode"] == TypedRow("p1", "mode", T0, None, 1, 1, "opcua", 2, None, "auto")
    assert by["flow"] == TelemetryRow("p1", "flow", T0, 1.0, 1, 1, "opcua") and not out.dead


def test_a_bad_value_is_dead_lettered_alone_with_the_original_bytes_and_headers() -> None:
    msg = raw({"temperature": 30.8, "running": True, "mode": [1, 2]})
    msg.headers = [("mqtt.topic", b"plant/p1"), ("bridge", b"mqtt")]
    out = split_batch([msg], Limits())
    assert sorted(r.sensor for r in out.rows) == ["running", "temperature"]
    (dead,) = out.dead
    assert dead.value == msg.value and dead.field == "readings.mode"
    headers = dict(dead.headers())
    assert headers["mqtt.topic"] == b"plant/p1" and headers["bridge"] == b"mqtt"
    assert headers["dlq.field"] == b"readings.mode"
    assert headers["dlq.detail"].startswith(b"readings.mode: list")


def test_twin_events_skip_readings_without_a_value() -> None:
    msgs = [
        raw({"speed": 100.0, "temp": None}, status={"temp": "BadSensorFailure"}),
        raw({"temp": None}, seq=2, quality="bad"),
    ]
    out = decode_batch(msgs, InputTopics("raw", "desired", "acks"), ReadingRules(), rows=False)
    assert [ev.values for _, ev in out.events] == [{"speed": 100.0}]


def test_boolean_desired_value_drives_a_command_and_syncs_on_the_reported_boolean() -> None:
    upd, _signed, _signature = decode_desired(b'{"twin_id":"t1","values":{"speed":true}}')
    assert upd.values == {"speed": True}
    run = Run(reconciler(strategy="digital_wins", tolerance=0.5))
    run(reading(0, False))
    out = run(desired(1, True))
    (cmd,) = commands(out)
    assert cmd.value is True
    run(reading(2, True), reading(4, True))
    assert run.state.status.value == "synchronized"


def test_models_take_booleans_as_context_and_never_score_them() -> None:
    model = ModelConfig(
        anomaly=AnomalyConfig(warmup=20, window=3),
        operating_point=OperatingPointConfig(settle_s=5),
        forecast=ForecastConfig(),
    )
    cfg = LiveModelConfig(model, forecast_every=5)
    state = None
    records = []
    for i in range(80):
        r = Reading(T0 + timedelta(seconds=i), {"flow": 10.0 + (i % 3) * 0.1, "running": i < 40})
        state, out = step(state, r, cfg, "p1")
        records += out
    assert state.model.operating_point.context == ["running"]
    scores = [r for r in records if type(r).__name__ == "AnomalyScore"]
    assert scores and all(set(s.contributions) <= {"flow"} for s in scores)
    assert set(state.model.forecaster.models) == {"flow"}  # booleans are not forecast


def test_models_drop_values_without_value_or_with_a_bad_status() -> None:
    from operators.records.envelope import decode

    env = decode(raw({"a": 1.0, "b": None, "c": 2.0}, status={"b": "BadSensorFailure", "c": "BadOutOfRange"}).value)
    assert reading_of(env).readings == {"a": 1.0}
