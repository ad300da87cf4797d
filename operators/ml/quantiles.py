"""Rolling quantiles as ``river.stats.RollingQuantile`` computes them: the forecasters' interval widths.

:func:`quantile_of` one window, :func:`quantiles_of` many windows of one size in one sort,
:class:`WindowQuantile` a ring of the last values (the layout of earlier snapshots).
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from operators.versioned_state import doubles


def quantile_of(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile of ``values`` (any order, at least one) as ``river.stats.RollingQuantile``
    computes it over its window: linear between the two nearest order statistics, the same float
    operations, so the same number bit for bit (tests/unit/ml/test_step_many.py)."""
    size = len(values)
    idx = q * (size - 1)
    lower = math.floor(idx)
    higher = min(lower + 1, size - 1)
    part = np.partition(values, (lower, higher))
    lo, hi = float(part[lower]), float(part[higher])
    return lo + (hi - lo) * (idx - lower)


def quantiles_of(rows: np.ndarray, q: float) -> list[float]:
    """:func:`quantile_of` of each row (one sort for all: of small rows quicker than a partition at two
    places): the same order statistics, the same float operations on them, so the same numbers bit for bit."""
    size = rows.shape[1]
    idx = q * (size - 1)
    lower = math.floor(idx)
    higher = min(lower + 1, size - 1)
    ranked = np.sort(rows, axis=1)
    frac = idx - lower
    return [lo + (hi - lo) * frac for lo, hi in zip(ranked[:, lower].tolist(), ranked[:, higher].tolist(), strict=True)]


class WindowQuantile:
    """The ``q`` quantile (:func:`quantile_of`) of the last ``window_size`` values, kept in one ring
    of doubles (River's sorted window cost about 3.4 KiB at 200 values, outside Python's heap).
    :class:`~operators.ml.forecast.SensorForecasts` keeps each sensor's ring in that sensor's one
    array; snapshots written before hold one of these per sensor.

    >>> w = WindowQuantile(0.5, window_size=3)
    >>> for x in (5.0, 1.0, 3.0, 10.0):
    ...     w.update(x)
    >>> w.get()  # median of 1, 3, 10
    3.0
    """

    __slots__ = ("n", "q", "values")

    def __init__(self, q: float, window_size: int) -> None:
        self.q = q
        self.values = doubles(window_size)
        self.n = 0  # values seen (the ring's write position is n % window_size)

    def update(self, x: float) -> None:
        self.values[self.n % len(self.values)] = x
        self.n += 1

    def get(self) -> float | None:
        if not self.n:
            return None
        return quantile_of(np.frombuffer(self.values, count=min(self.n, len(self.values))), self.q)

    def __getstate__(self) -> tuple[float, array[float], int]:
        return self.q, self.values, self.n

    def __setstate__(self, state: tuple[float, array[float], int]) -> None:
        self.q, self.values, self.n = state
