"""Holt's linear smoothing (level + trend, no season): the forecasters' one-step recursion.

:class:`~operators.ml.forecast.SensorForecasts` runs these float operations inline on its packed
arrays; this class starts a sensor's model and reads the states of earlier versions.
"""

from __future__ import annotations

import statistics
from typing import Any

from operators.versioned_state import slot_state


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
