"""Per-sensor forecasts with prediction intervals (Holt linear smoothing + conformal band).

For each sensor a :class:`Holt` model (level and trend, no season) forecasts
``horizon`` samples ahead. The interval is split-conformal: the ``coverage`` quantile of the
absolute errors of the last ``window`` forecasts made for exactly that horizon, so it is as
wide as the model has recently been wrong.

>>> f = SensorForecasts(ForecastConfig(horizon=3, window=20))
>>> for t in range(60):
...     f.update({"temp": 20.0 + 0.5 * t})
>>> fc = f.forecast()["temp"]
>>> round(fc.value, 1), fc.low <= fc.value <= fc.high
(51.0, True)
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.ml.config import ForecastConfig


@dataclass(frozen=True, slots=True)
class SensorForecast:
    horizon: int  # samples ahead
    value: float
    low: float
    high: float


def slot_state(obj: Any) -> dict[str, Any]:
    """A slotted object's state as the dict its earlier ``__dict__`` version pickled (snapshots of
    either layout load into either)."""
    return {name: getattr(obj, name) for name in obj.__slots__}


class Holt:
    """Holt's linear method (level + trend, additive, no season): the one-step recursion

        level_t = α·y_t + (1 − α)·(level_{t−1} + trend_{t−1})
        trend_t = β·(level_t − level_{t−1}) + (1 − β)·trend_{t−1}
        ŷ_{t+h} = level_t + h·trend_t

    initialised from the first two values (level: their mean, trend: their difference); β = 0
    or None means no trend. Why our own and not ``river.time_series.HoltWinters``: the forecaster
    needs one h-step value per sample, and River's public API only builds all ``h`` steps
    (``forecast(h)``) and keeps its initialisation in private attributes; these few lines are the
    same float operations, so the numbers equal River's bit for bit (tests/unit/ml/test_step_many.py).

    >>> m = Holt(alpha=0.5, beta=0.1)
    >>> for y in (1.0, 2.0, 3.0, 4.0):
    ...     m.learn_one(y)
    >>> m.forecast_at(1), m.forecast_at(3)
    (4.92375, 6.99625)
    """

    __slots__ = ("alpha", "beta", "first", "level", "trend")  # no __dict__: ~290 bytes less per sensor

    def __init__(self, alpha: float, beta: float | None = None) -> None:
        self.alpha = alpha
        self.beta = beta or None
        self.first: float | None = None  # the first value, until the second initialises the model
        self.level: float | None = None
        self.trend: float | None = None

    def learn_one(self, y: float) -> None:
        level = self.level
        if level is None:
            if self.first is None:
                self.first = y
                return
            self.level = statistics.mean((self.first, y))  # as River: an exactly rounded mean
            self.trend = y - self.first if self.beta is not None else None
            return
        trend = self.trend
        self.level = new = self.alpha * y + (1 - self.alpha) * (level + (trend if trend is not None else 0))
        if trend is not None:
            beta = self.beta
            assert beta is not None
            self.trend = beta * (new - level) + (1 - beta) * trend

    def forecast_at(self, h: int) -> float:
        """The forecast ``h`` samples ahead (needs two learned values)."""
        assert self.level is not None, "Holt needs two values before it forecasts"
        return self.level + h * self.trend if self.trend is not None else self.level

    def __getstate__(self) -> dict[str, Any]:
        return slot_state(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @classmethod
    def of_river(cls, model: Any) -> Holt:
        """The same model from a ``river.time_series.HoltWinters`` (additive, no season) that
        states written by earlier versions hold; read from its public ``level``/``trend``."""
        out = cls(model.alpha, model.beta)
        if len(model.level):
            out.level = model.level[-1]
            out.trend = model.trend[-1] if out.beta is not None and model.trend else None
        return out


class WindowQuantile:
    """The ``q`` quantile of the last ``window_size`` values, as ``river.stats.RollingQuantile``
    computes it (linear between the two nearest order statistics; the same float operations, so
    the same numbers bit for bit: tests/unit/ml/test_step_many.py), kept in one ring of
    doubles (8 bytes per value; River's sorted window costs about 3.4 KiB at 200 values, outside Python's
    heap). The quantile is selected when asked (:meth:`get`), not kept sorted on every update.

    >>> w = WindowQuantile(0.5, window_size=3)
    >>> for x in (5.0, 1.0, 3.0, 10.0):
    ...     w.update(x)
    >>> w.get()  # median of 1, 3, 10
    3.0
    """

    __slots__ = ("n", "q", "values")

    def __init__(self, q: float, window_size: int) -> None:
        self.q = q
        self.values = array("d", bytes(8 * window_size))
        self.n = 0  # values seen (the ring's write position is n % window_size)

    def update(self, x: float) -> None:
        self.values[self.n % len(self.values)] = x
        self.n += 1

    def get(self) -> float | None:
        if not self.n:
            return None
        size = min(self.n, len(self.values))
        idx = self.q * (size - 1)
        lower = math.floor(idx)
        higher = min(lower + 1, size - 1)
        part = np.partition(np.frombuffer(self.values, count=size), (lower, higher))
        lo, hi = float(part[lower]), float(part[higher])
        return lo + (hi - lo) * (idx - lower)

    def __getstate__(self) -> tuple[float, array[float], int]:
        return self.q, self.values, self.n

    def __setstate__(self, state: tuple[float, array[float], int]) -> None:
        self.q, self.values, self.n = state


class _SensorModel:
    """One sensor's forecaster. ``pending`` holds the last ``horizon`` forecasts awaiting their
    truth in a plain list used as a ring (the one made at learned sample ``k`` at index
    ``(k - 1) % horizon``): 8 bytes a slot, where a ``deque`` block costs 760 bytes.

    States written by earlier versions resume: River's HoltWinters in ``model`` becomes
    :class:`Holt`, a ``deque`` in ``pending`` becomes the ring, and River's ``RollingQuantile`` in
    ``errors`` stays (same interface, same numbers as :class:`WindowQuantile`)."""

    __slots__ = ("errors", "model", "n", "pending")

    def __init__(self, cfg: ForecastConfig) -> None:
        self.model = Holt(cfg.alpha, cfg.beta)
        self.pending: list[float] = []  # forecasts awaiting their truth (a ring, see above)
        self.errors = WindowQuantile(cfg.coverage, window_size=cfg.window)
        self.n = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state.get("model"), Holt):
            state["model"] = Holt.of_river(state["model"])
        pending = state.get("pending")
        if isinstance(pending, deque):  # the k-th latest forecast goes to (n - 1 - k) % horizon
            ring: list[Any] = [None] * len(pending)
            for k, value in enumerate(reversed(pending)):
                ring[(state["n"] - 1 - k) % (pending.maxlen or len(pending))] = value
            state["pending"] = ring
        for name, value in state.items():
            setattr(self, name, value)

    def __getstate__(self) -> dict[str, Any]:
        return slot_state(self)


class SensorForecasts:
    """Forecasts of one twin's sensors; picklable. (Its own contract, not River's ``Forecaster``:
    :meth:`update` takes all sensors of a sample, :meth:`forecast` gives each one's ``horizon``-step value.)

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
            pending, slot = m.pending, m.n % h  # the ring's oldest forecast, then the new one's
            if calibrate and len(pending) == h:  # the forecast made h samples ago is for now
                m.errors.update(abs(y - pending[slot]))
            m.model.learn_one(y)
            m.n += 1
            value = m.model.forecast_at(h) if m.n >= 2 else y
            if len(pending) < h:
                pending.append(value)
            else:
                pending[slot] = value

    def forecast(self) -> dict[str, SensorForecast]:
        """The latest ``horizon``-step forecast per sensor, with its interval (NaN until calibrated)."""
        h = self.config.horizon
        out = {}
        for name, m in self.models.items():
            if not m.pending:
                continue
            value = m.pending[(m.n - 1) % h]
            width = m.errors.get() if m.n > h else None
            w = math.nan if width is None else width
            out[name] = SensorForecast(h, value, value - w, value + w)
        return out


# The class name in snapshots pickled before it was renamed (River's Forecaster is another contract).
Forecaster = SensorForecasts
