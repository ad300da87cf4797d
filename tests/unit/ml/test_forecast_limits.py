"""Operating limits: live forecasts carry the limit and the predicted crossing; alerts follow."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from operators.alerts.lifecycle import TwinAlerts
from operators.alerts.rules import AlertRules
from operators.ml.config import AnomalyConfig, ForecastConfig, ModelConfig
from operators.ml.live_state import LiveModelConfig
from operators.ml.live_step import Reading, step
from operators.ml.sensor_limits import SensorLimit, breach_at
from operators.records.alerts import ForecastPoint

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LIMIT = SensorLimit(sensor="temp_c", high=90.0, twins="comp-*")


def cfg(*limits: SensorLimit) -> LiveModelConfig:
    model = ModelConfig(anomaly=AnomalyConfig(warmup=50, window=3), forecast=ForecastConfig(horizon=30))
    return LiveModelConfig(model, forecast_every=5, limits=limits)


def run(twin: str, config: LiveModelConfig, heat_from: int = 300, n: int = 500) -> list[ForecastPoint]:
    """A compressor at 60 °C that starts heating up by 0.2 °C per sample at ``heat_from``."""
    state, out = None, []
    for i in range(n):
        temp = 60.0 + 0.3 * math.sin(i / 4) + max(0, i - heat_from) * 0.2
        state, records = step(state, Reading(T0 + timedelta(seconds=i), {"temp_c": temp, "rpm": 2950.0}), config, twin)
        out += [r for r in records if isinstance(r, ForecastPoint) and r.sensor == "temp_c"]
    return out


def test_forecasts_predict_the_crossing_before_it_happens_and_open_an_alert():
    forecasts = run("comp-1", cfg(LIMIT))
    assert forecasts and all(f.limit == 90.0 for f in forecasts)
    crossing = T0 + timedelta(seconds=300 + 150)  # 60 + 0.2 · 150 = 90
    early = [f for f in forecasts if f.breach_at is not None and f.ts < crossing]
    assert early, "no forecast saw the breach coming"
    assert all(f.breach_at <= f.target_ts for f in early)  # within the forecast's own horizon
    assert not [f for f in forecasts if f.breach_at is not None and f.ts < T0 + timedelta(seconds=300)]

    engine = TwinAlerts("comp-1", AlertRules(escalate_after_s=0))
    opened = [a for f in forecasts for a in engine.apply(f) if a.event == "opened"]
    assert [(a.kind, a.twin_id) for a in opened] == [("forecast_breach", "comp-1")]
    assert opened[0].opened_at < crossing
    assert [(b["sensor"], b["limit"]) for b in opened[0].evidence["breaches"]] == [("temp_c", 90.0)]


def test_twins_outside_the_rule_get_no_limit():
    assert {(f.limit, f.breach_at) for f in run("pump-1", cfg(LIMIT), n=200)} == {(None, None)}


def test_low_limits_and_readings_already_outside():
    low = SensorLimit(sensor="suction_bar", low=0.5)
    t1 = T0 + timedelta(seconds=10)
    assert breach_at(low, now=1.0, predicted=0.0, ts=T0, target_ts=t1) == (0.5, T0 + timedelta(seconds=5))
    assert breach_at(low, now=0.4, predicted=0.6, ts=T0, target_ts=t1) == (0.5, T0)
    band = SensorLimit(sensor="x", low=0.0, high=10.0)
    assert breach_at(band, now=5.0, predicted=8.0, ts=T0, target_ts=t1) == (10.0, None)


@pytest.mark.parametrize("bad", [{"sensor": "t"}, {"sensor": "t", "low": 5.0, "high": 1.0}])
def test_a_rule_without_a_usable_limit_is_refused(bad):
    with pytest.raises(ValidationError):
        SensorLimit(**bad)


def test_no_predicted_breach_while_the_models_warm_up():
    """A young forecaster extrapolates start-up noise; only readings already outside count then."""
    config = cfg(LIMIT)
    state, forecasts = None, []
    for i in range(40):  # warm-up is 50 samples; a steep start-up ramp that stays below the limit
        temp = 40.0 + 1.2 * i
        state, records = step(
            state, Reading(T0 + timedelta(seconds=i), {"temp_c": temp, "rpm": 2950.0}), config, "comp-1"
        )
        forecasts += [r for r in records if isinstance(r, ForecastPoint) and r.sensor == "temp_c"]
    assert forecasts and {f.breach_at for f in forecasts} == {None}
    hot = []
    for i in range(40, 46):  # still warming up, now above the limit: a breach now
        state, records = step(
            state, Reading(T0 + timedelta(seconds=i), {"temp_c": 95.0, "rpm": 2950.0}), config, "comp-1"
        )
        hot += [r for r in records if isinstance(r, ForecastPoint) and r.sensor == "temp_c"]
    assert state.model.anomaly.n_seen < 50
    assert hot and all(f.breach_at == f.ts for f in hot)


def test_no_predicted_breach_until_the_forecast_interval_is_calibrated():
    """The demo's case: after the anomaly warm-up, but before the sensor's forecast has a full window
    of its own errors, a start-up transient (45 °C → 88 °C, below the 90 °C limit) is not a predicted breach."""
    config = cfg(LIMIT)  # warm-up 50 samples; forecast interval window 200 (+ horizon 30)
    state, forecasts = None, []
    for i in range(200):
        temp = 45.0 + 43.0 * (1 - math.exp(-i / 15.0))
        state, records = step(
            state, Reading(T0 + timedelta(seconds=i), {"temp_c": temp, "rpm": 2950.0}), config, "comp-1"
        )
        forecasts += [r for r in records if isinstance(r, ForecastPoint) and r.sensor == "temp_c"]
    after_warmup = [f for f in forecasts if f.ts >= T0 + timedelta(seconds=60)]
    assert after_warmup and {f.breach_at for f in after_warmup} == {None}
    assert not state.model.forecast_ready("temp_c")
