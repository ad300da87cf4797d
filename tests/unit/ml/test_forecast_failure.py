import math

import numpy as np

from operators.ml.config import FailureConfig, ForecastConfig
from operators.ml.failure import FleetFailureModel, TwinHistory
from operators.ml.forecast import SensorForecasts


def test_forecast_interval_covers_about_the_configured_share():
    rng = np.random.default_rng(0)
    f = SensorForecasts(ForecastConfig(horizon=5, coverage=0.9, window=300))
    y = 50 + np.cumsum(rng.normal(0, 0.2, 3000)) + rng.normal(0, 1, 3000)
    pending, hits, total = [], 0, 0
    for v in y:
        if len(pending) == 5:
            fc = pending.pop(0)
            if not math.isnan(fc.low):
                total += 1
                hits += fc.low <= v <= fc.high
        f.update({"x": float(v)})
        pending.append(f.forecast()["x"])
    assert total > 2500
    assert 0.8 <= hits / total <= 0.97


def test_fleet_model_learns_rul_and_probability_rises_near_failure():
    cfg = FailureConfig(rul_cap=80, horizon=15)
    fleet = FleetFailureModel(cfg)
    rng = np.random.default_rng(1)
    for _ in range(12):
        life = int(rng.integers(120, 200))
        h = TwinHistory(cfg)
        for t in range(life):
            h.observe(t, {"temp": 60 + 30 * (t / life) ** 2 + rng.normal(0, 0.3), "rpm": 1500.0})
        fleet.learn_history(h.on_failure(life - 1))
    h = TwinHistory(cfg)
    preds = {}
    for t in range(150):
        feats = h.observe(t, {"temp": 60 + 30 * (t / 160) ** 2, "rpm": 1500.0}, keep=False)
        preds[t] = fleet.predict(feats)
    assert abs(preds[149].rul - 10) < 15
    assert preds[149].failure_probability > 0.5 > preds[40].failure_probability
    assert preds[149].rul_low <= preds[149].rul <= preds[149].rul_high


def test_untrained_fleet_predicts_nothing():
    p = FleetFailureModel().predict({"a": 1.0})
    assert math.isnan(p.rul) and math.isnan(p.failure_probability)
