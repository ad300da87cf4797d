"""The live flow's per-twin model step: readings, maintenance status, resets and events in; scores out.

Plain Python: :func:`step` is what the models flow runs in a Bytewax ``stateful_map``
keyed by twin_id; :class:`~operators.ml.live_state.TwinModelState` is the picklable state
(recovered after a restart, :mod:`operators.ml.live_state`). Outputs are the records the alerts
flow consumes (:mod:`operators.records.alerts`, built in :mod:`operators.ml.live_records`): an
:class:`AnomalyScore` per scored sample and, every ``forecast_every`` samples, a
:class:`ForecastPoint` per sensor.

With failure prediction on (``ml.model = "rul"``) the step also emits
:class:`~operators.ml.fleet_step.FleetItem` records for the fleet step (:func:`fleet_step`, a second
``stateful_map`` keyed by :func:`fleet_of`): the twin's features every ``predict_every``
samples, and its labelled history when an :class:`Event` of kind ``failure`` arrives. The fleet
step learns from the histories and answers features with a
:class:`~operators.records.alerts.FailurePrediction` (none until it has learned a failure).

>>> from datetime import UTC, datetime, timedelta
>>> from operators.ml.config import AnomalyConfig, ModelConfig
>>> cfg = LiveModelConfig(ModelConfig(anomaly=AnomalyConfig(warmup=20, window=3)), forecast_every=0)
>>> state, t0 = None, datetime(2026, 1, 1, tzinfo=UTC)
>>> for i in range(30):
...     state, out = step(state, Reading(t0 + timedelta(seconds=i), {"a": i % 3 + 0.5}), cfg)
>>> [type(r).__name__ for r in out], state.model.anomaly.n_learned
(['AnomalyScore'], 30)
>>> state, _ = step(state, Status(maintenance=True), cfg)
>>> state, _ = step(state, Reading(t0 + timedelta(seconds=31), {"a": 1.0}), cfg)
>>> state.model.anomaly.n_learned  # no learning in maintenance
30
>>> state, _ = step(state, Status(maintenance=False), cfg)
>>> state, _ = step(state, Reading(t0 + timedelta(seconds=32), {"a": 1.0, "b": 2.0}), cfg)
>>> state.model.anomaly.n_learned, sorted(state.held)  # a new sensor: the models start over
(1, ['a', 'b'])
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from operators.ml.config import FailureConfig
from operators.ml.failure import FleetFailureModel
from operators.ml.fleet_step import FleetItem, FleetStep
from operators.ml.forecast import ForecastBatch
from operators.ml.live_records import Output, anomaly_record, failure_records, forecast_records, silence_record
from operators.ml.live_state import (
    SILENCE_CHECK_EVERY,
    LiveModelConfig,
    TwinModelState,
    fleet_of,
    silent_sensors,
)
from operators.ml.operating_point import seconds
from operators.ml.scoring import Score
from operators.records.alerts import FailurePrediction
from operators.records.envelope import Envelope


class Reading(msgspec.Struct, frozen=True):
    """One sample for the models (a msgspec struct: built once per reading, cheaply); ``ts`` is a
    datetime, or a number of ``time_unit_s`` seconds (replayed cycles)."""

    ts: datetime | float
    readings: dict[str, float]


def reading_of(env: Envelope) -> Reading | None:
    """The models' view of an envelope: ``bad`` quality values (a failed sensor, an OPC-UA node
    still waiting for its first value, a reading whose status is Bad) and readings without a value
    are stored by the telemetry flow but never scored or learned; the twin's other sensors keep
    their last good values (sample-and-hold). Booleans stay booleans: the models take them as
    context (the operating point: a pump running or not), never as a signal to score. The readings
    are the envelope's (never modified: the step copies them into its held values)."""
    if env.quality == "bad":
        return None
    readings = env.readings
    if env.status is not None or None in readings.values():
        readings = {k: v for k, v in readings.items() if v is not None and env.quality_of(k) != "bad"}
        if not readings:
            return None
    return Reading(env.ts, readings)


@dataclass(frozen=True, slots=True)
class Status:
    maintenance: bool


@dataclass(frozen=True, slots=True)
class Reset:
    requested_by: str = ""


@dataclass(frozen=True, slots=True)
class Rebaseline:
    """``twinflow model rebaseline``: learn the healthy reference again (all sensors, or ``sensor``)."""

    sensor: str | None = None
    requested_by: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer of the live flow: ``at`` is the wall-clock time; silent sensors are decided on it."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """A ``twin.events`` record: ``failure`` labels the twin's history, ``repair`` starts a new life."""

    kind: str
    ts: datetime


Item = Reading | Status | Reset | Rebaseline | Event | Tick


def step(
    state: TwinModelState | None, item: Item, cfg: LiveModelConfig, twin_id: str = ""
) -> tuple[TwinModelState, list[Output]]:
    """Apply one item to a twin's state; returns the new state and the records to publish."""
    return step_many(state, (item,), cfg, twin_id)


def step_many(
    state: TwinModelState | None, items: Iterable[Item], cfg: LiveModelConfig, twin_id: str = ""
) -> tuple[TwinModelState, list[Output]]:
    """Apply one twin's items in order: the same as :func:`step` on each, records concatenated
    (the flow runs this once per twin and polled batch). The readings are scored one by one; the
    forecasters learn a run of readings column-wise at its end (:class:`_Readings`)."""
    state = state or TwinModelState(cfg, twin_id)
    state.adopt_failure_config(cfg.model.failure)
    state.adopt_signal_config(cfg.model.counters, cfg.model.states)
    state.twin_id = state.twin_id or twin_id
    records: list[Output] = []
    run = _Readings(state, cfg, twin_id, records)
    for item in items:
        if item.__class__ is Reading:
            run.score(item)
        else:
            run.flush()
            _apply(state, item, cfg, twin_id, records)
    run.flush()
    return state, records


def _apply(state: TwinModelState, item: Item, cfg: LiveModelConfig, twin_id: str, records: list[Output]) -> None:
    """One item other than a reading; appends its records."""
    if isinstance(item, Status):
        state.maintenance = item.maintenance
        return
    if isinstance(item, Reset):
        state.model.reset()  # anomaly, forecasts and the failure history
        state.samples = 0
        return
    if isinstance(item, Rebaseline):
        state.model.rebaseline(item.sensor)
        return
    if isinstance(item, Event):
        labelled = state.model.on_event(item.kind, item.ts)
        if labelled:
            records.append(FleetItem(twin_id, fleet_of(twin_id, cfg), item.ts, labelled=labelled))
        return
    if isinstance(item, Tick):
        _tick(state, item.at, cfg, twin_id, records)
        return
    raise TypeError(f"not a model step item: {item!r}")


class _Readings:
    """A run of one twin's readings: each is scored at once; its records wait for the run's end,
    when the forecasters learn the whole run column-wise (:class:`ForecastBatch`) and the records
    are emitted in reading order (score, forecasts, failure features), as reading by reading."""

    __slots__ = ("cfg", "deferred", "pending", "records", "state", "twin_id")

    def __init__(self, state: TwinModelState, cfg: LiveModelConfig, twin_id: str, records: list[Output]) -> None:
        self.state, self.cfg, self.twin_id, self.records = state, cfg, twin_id, records
        self.deferred = ForecastBatch()
        # per reading: ts, score, held values, sampling period, samples, failure features (or None)
        self.pending: list[tuple[Any, Score, dict[str, float], float | None, int, FleetItem | None]] = []

    def score(self, item: Reading) -> None:
        state, cfg = self.state, self.cfg
        t = seconds(item.ts, cfg.model.time_unit_s)
        state.observe_time(item.ts, t)
        held = state.held
        known = len(held)
        held.update(item.readings)
        if len(held) > known and known:
            # A sensor appeared (e.g. OPC-UA's first notifications arrive split): the models learn
            # the full sensor set from here on.
            self.flush()
            state.model.reset()
        seen = state.seen
        for name in item.readings:
            rec = seen.get(name)
            if rec is None:
                seen[name] = array("d", (t, t, 1.0, 0.0))
            else:
                if len(rec) > 3:  # (3 values in snapshots of earlier versions)
                    rec[3] = t - rec[1]
                rec[1] = t
                rec[2] += 1.0
        state.samples += 1
        model = state.model
        health = model.sensor_health
        if health is not None and (health.silent or state.samples % SILENCE_CHECK_EVERY == 0):
            health.set_silent(silent_sensors(state, t, cfg))
        publish = bool(cfg.forecast_every) and state.samples % cfg.forecast_every == 0
        values = dict(held)
        mt = t if model.config.time_unit_s == cfg.model.time_unit_s else None  # (t is the model's time too)
        reported = item.readings if len(item.readings) < len(values) else None  # the others are held
        out = model.update(
            item.ts, values, not state.maintenance, forecasts=publish, deferred=self.deferred, t=mt, reported=reported
        )
        history = model.history
        fleet = None
        if history is not None and cfg.predict_every and history.age % cfg.predict_every == 0:
            fleet = FleetItem(self.twin_id, fleet_of(self.twin_id, cfg), item.ts, features=dict(history.last_features))
        self.pending.append((item.ts, out.score, values, state.period_s, state.samples, fleet))

    def flush(self) -> None:
        """The run's forecasts, then its records in reading order."""
        if not self.pending:
            return
        state, cfg, twin_id, records = self.state, self.cfg, self.twin_id, self.records
        forecaster = state.model.forecaster
        deferred = self.deferred
        forecasts = deferred.run(forecaster) if forecaster is not None and len(deferred) else None
        state.wall_at_last = time.time()
        for i, (ts, score, held, period_s, samples, fleet) in enumerate(self.pending):
            if not score.warming_up and math.isfinite(score.anomaly_score):
                records.append(anomaly_record(twin_id, ts, score, cfg))
            published = forecasts[i] if forecasts is not None else None
            if published and published[0] and period_s and isinstance(ts, datetime):
                forecast_records(published, state.model, ts, score, held, period_s, samples, cfg, twin_id, records)
            if fleet is not None:
                records.append(fleet)
        self.pending = []


def _tick(state: TwinModelState, at: datetime, cfg: LiveModelConfig, twin_id: str, records: list[Output]) -> None:
    """A timer: sensors (or the whole twin) that went silent become sensor faults, published at once."""
    state.ticked_at = at.timestamp()
    health = state.model.sensor_health
    if state.maintenance:  # a twin in maintenance is often switched off: its silence is no fault
        return
    if health is None or state.last_ts is None or state.wall_at_last is None:
        return
    # event time of "now": the twin's last data time plus the wall-clock time since it arrived
    if not isinstance(state.last_ts, datetime):
        return
    ts = state.last_ts + timedelta(seconds=max(at.timestamp() - state.wall_at_last, 0.0))
    if health.set_silent(silent_sensors(state, ts.timestamp(), cfg)) and health.current:
        records.append(silence_record(twin_id, ts, dict(health.current), cfg))


def fleet_step(
    state: FleetFailureModel | None, item: FleetItem, cfg: LiveModelConfig
) -> tuple[FleetFailureModel, list[FailurePrediction]]:
    """The fleet's failure model: learns labelled histories, answers features (once it has learned)."""
    failure = cfg.model.failure or FailureConfig()
    fleet, predictions = FleetStep(failure)(state, item)
    return fleet, failure_records(fleet, predictions, item.fleet, failure, cfg)
