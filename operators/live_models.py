"""The live flow's per-twin model step: readings, maintenance status and resets in; scores out.

Plain Python: :func:`step` is what the models flow runs in a Bytewax ``stateful_map``
keyed by twin_id; :class:`TwinModelState` is the picklable state (recovered after a
restart). Outputs are the records the alerts flow consumes
(:mod:`operators.alert_records`): an :class:`AnomalyScore` per scored sample and, every
``forecast_every`` samples, a :class:`ForecastPoint` per sensor.

>>> from datetime import UTC, datetime, timedelta
>>> from operators.ml_config import AnomalyConfig, ModelConfig
>>> cfg = LiveModelConfig(ModelConfig(anomaly=AnomalyConfig(warmup=20, window=3)), forecast_every=0)
>>> state, t0 = None, datetime(2026, 1, 1, tzinfo=UTC)
>>> for i in range(30):
...     state, out = step(state, Reading(t0 + timedelta(seconds=i), {"a": float(i % 3)}), cfg)
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from operators.alert_records import AnomalyScore, ForecastPoint
from operators.ml_config import ModelConfig
from operators.twin_model import TwinModel


@dataclass(frozen=True, slots=True)
class LiveModelConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    forecast_every: int = 10  # emit forecasts every N samples (0: never)
    model_name: str = "twinflow-t2"


@dataclass(frozen=True, slots=True)
class Reading:
    ts: datetime
    readings: dict[str, float]


@dataclass(frozen=True, slots=True)
class Status:
    maintenance: bool


@dataclass(frozen=True, slots=True)
class Reset:
    requested_by: str = ""


Item = Reading | Status | Reset
Output = AnomalyScore | ForecastPoint


class TwinModelState:
    """One twin's models, its maintenance flag and its sampling period estimate."""

    def __init__(self, cfg: LiveModelConfig) -> None:
        self.model = TwinModel(cfg.model)
        self.maintenance = False
        self.samples = 0
        self.last_ts: datetime | None = None
        self.period_s: float | None = None  # EWMA of the sample spacing, for forecast target times
        # Last value per sensor: OPC-UA reports by exception, so an envelope may carry only the
        # sensors that changed; the models see every sensor at its latest value (sample-and-hold).
        self.held: dict[str, float] = {}

    def _observe_time(self, ts: datetime) -> None:
        if self.last_ts is not None:
            dt = (ts - self.last_ts).total_seconds()
            if dt > 0:
                self.period_s = dt if self.period_s is None else 0.9 * self.period_s + 0.1 * dt
        self.last_ts = ts


def step(
    state: TwinModelState | None, item: Item, cfg: LiveModelConfig, twin_id: str = ""
) -> tuple[TwinModelState, list[Output]]:
    """Apply one item to a twin's state; returns the new state and the records to publish."""
    state = state or TwinModelState(cfg)
    if isinstance(item, Status):
        state.maintenance = item.maintenance
        return state, []
    if isinstance(item, Reset):
        state.model.reset()
        state.samples = 0
        return state, []
    state._observe_time(item.ts)
    known = len(state.held)
    state.held.update(item.readings)
    if len(state.held) > known and known:
        # A sensor appeared (e.g. OPC-UA's first notifications arrive split): the models learn
        # the full sensor set from here on.
        state.model.reset()
    state.samples += 1
    publish = bool(cfg.forecast_every) and state.samples % cfg.forecast_every == 0
    out = state.model.update(item.ts, dict(state.held), learn=not state.maintenance, forecasts=publish)
    records: list[Output] = []
    score = out.score
    if not score.warming_up and math.isfinite(score.anomaly_score):
        records.append(
            AnomalyScore(
                twin_id=twin_id,
                ts=item.ts,
                score=score.anomaly_score,
                threshold=1.0,
                is_anomaly=score.is_anomaly,
                contributions=score.contributions,
                model=cfg.model_name,
            )
        )
    if out.forecasts and state.period_s:
        for sensor, fc in out.forecasts.items():
            if not all(math.isfinite(v) for v in (fc.value, fc.low, fc.high)):
                continue
            records.append(
                ForecastPoint(
                    twin_id=twin_id,
                    sensor=sensor,
                    ts=item.ts,
                    target_ts=item.ts + timedelta(seconds=fc.horizon * state.period_s),
                    predicted=fc.value,
                    lower=fc.low,
                    upper=fc.high,
                )
            )
    return state, records
