"""Per-sensor forecasts with prediction intervals (River Holt linear smoothing + conformal band).

For each sensor a :class:`river.time_series.HoltWinters` (level and trend, no season) forecasts
``horizon`` samples ahead. The interval is split-conformal: the ``coverage`` quantile of the
absolute errors of the last ``window`` forecasts made for exactly that horizon, so it is as
wide as the model has recently been wrong.

>>> f = Forecaster(ForecastConfig(horizon=3, window=20))
>>> for t in range(60):
...     f.update({"temp": 20.0 + 0.5 * t})
>>> fc = f.forecast()["temp"]
>>> round(fc.value, 1), fc.low <= fc.value <= fc.high
(51.0, True)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from river import stats, time_series

from operators.ml_config import ForecastConfig


@dataclass(frozen=True, slots=True)
class SensorForecast:
    horizon: int  # samples ahead
    value: float
    low: float
    high: float


class _SensorModel:
    def __init__(self, cfg: ForecastConfig) -> None:
        self.model = time_series.HoltWinters(alpha=cfg.alpha, beta=cfg.beta)
        self.pending: deque[float] = deque(maxlen=cfg.horizon)  # forecasts awaiting their truth
        self.errors = stats.RollingQuantile(cfg.coverage, window_size=cfg.window)
        self.n = 0


def _last_step(model: time_series.HoltWinters, h: int) -> float:
    """``model.forecast(horizon=h)[-1]`` without building the other h-1 steps (additive, no season:
    level + h·trend, the same float operations as River's forecast)."""
    trend = model.trend
    return (model.level[-1] + (h * trend[-1] if trend else 0)) + 0


def _learn(model: time_series.HoltWinters, y: float) -> None:
    """``model.learn_one(y)``; for the additive level + trend model once initialised (every sample
    but the first) the same float operations inline, without River's per-component calls."""
    if not model._initialized or model.season is not None or model.multiplicative:
        model.learn_one(y)
        return
    level, trend = model.level, model.trend
    level.append(level.alpha * (y - 0) + (1 - level.alpha) * (level[-1] + (trend[-1] if trend else 0)))
    if trend is not None:
        trend.append(trend.beta * (level[-1] - level[-2]) + (1 - trend.beta) * trend[-1])


class Forecaster:
    """Forecasts for one twin; picklable.

    Nothing is learned with ``learn=False`` (twin in maintenance or simulating). Anomalous
    samples (``calibrate=False``) still move level and trend — a forecast must track an anomaly
    as it grows, that is when a limit breach is predicted — but never widen the interval.
    """

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.config = config or ForecastConfig()
        self.models: dict[str, _SensorModel] = {}

    def reset(self) -> None:
        self.models.clear()

    def update(self, readings: dict[str, float], learn: bool = True, calibrate: bool = True) -> None:
        if not learn:
            return
        h = self.config.horizon
        models = self.models
        for name, y in readings.items():
            if y is None or y.__class__ is bool or not math.isfinite(y):  # booleans are not forecast
                continue
            m = models.get(name)
            if m is None:
                m = models[name] = _SensorModel(self.config)
            pending = m.pending
            if calibrate and len(pending) == h:  # the forecast made h samples ago is for now
                m.errors.update(abs(y - pending[0]))
            _learn(m.model, y)
            m.n += 1
            pending.append(_last_step(m.model, h) if m.n >= 2 else y)

    def forecast(self) -> dict[str, SensorForecast]:
        """The latest ``horizon``-step forecast per sensor, with its interval (NaN until calibrated)."""
        h = self.config.horizon
        out = {}
        for name, m in self.models.items():
            if not m.pending:
                continue
            value = m.pending[-1]
            width = m.errors.get() if m.n > h else None
            w = math.nan if width is None else width
            out[name] = SensorForecast(h, value, value - w, value + w)
        return out
