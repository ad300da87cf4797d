"""Operating-point conditioning of a twin's anomaly detector: a setpoint change is not a fault.

Flow, head, power, vibration and temperature all move when an operator (or reconciliation's
``digital_wins`` command) changes a speed setpoint. Readings whose names match the ``context``
globs of :class:`~operators.ml_config.OperatingPointConfig` are the operating conditions: they
are not scored, and the other ("health") readings are scored *translated to the first operating
point* the twin was seen at::

    x'_t = y_t - s_k          s_k: shift of operating point k (0 at the first one)

1. **Transient guard.** A context reading that moves more than ``tolerance`` (relative) starts a
   settle period of ``settle_s``: the detector neither flags nor learns (motor ramps, thermal lags).
2. **Per-operating-point levels.** The mean ``m`` of the health readings over the last ``tail`` of
   the settle period is the new point's level. Each operating point keeps an exponentially
   weighted mean and spread of its normal readings (half-life = the detector's baseline half-life).
3. **Check against what was learned.** The expected level at the new point is its own learned mean
   (a point seen before) or, with at least ``degree + 1`` points learned around it, a polynomial
   fit of the points' means in the scaled context (affinity laws: flow ∝ n, head ∝ n², power ∝ n³,
   so degree 3 fits speed changes). If ``m`` is within ``check_sigmas`` spreads of it (or nothing is
   expected yet: an unseen point outside the learned range), the point is accepted: ``s_k`` makes
   ``x'`` continue exactly where the detector's baseline was. Otherwise the shift is taken from the
   expectation, so the detector sees (and names) the sensors that are off.

Without context readings :meth:`OperatingPoint.update` is exactly ``detector.update``.

>>> from operators.anomaly import AnomalyDetector
>>> from operators.ml_config import AnomalyConfig, OperatingPointConfig
>>> import random
>>> rng = random.Random(0)
>>> det = AnomalyDetector(AnomalyConfig(warmup=50, window=3))
>>> op = OperatingPoint(OperatingPointConfig(settle_s=20))
>>> def pump(t, sp):
...     return {"speed_sp_rpm": sp, "flow_m3h": sp / 10 + rng.gauss(0, 0.1), "power_kw": (sp / 1450) ** 3 * 18}
>>> flags = [op.update(t, pump(t, 1450.0 if t < 300 else 1200.0), det).is_anomaly for t in range(600)]
>>> any(flags), op.context, det.sensors
(False, ['speed_sp_rpm'], ['flow_m3h', 'power_kw'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from operators.anomaly import AnomalyDetector, Score
from operators.ml_config import OperatingPointConfig
from operators.versioned_state import VersionedState

STATE_VERSION = 1
LEARN_EVERY = 10  # operating-point statistics learn from every 10th normal sample (half-life scaled)


def context_names(names: list[str], globs: tuple[str, ...]) -> list[str]:
    """The reading names that match a context glob (case-insensitive), sorted."""
    pats = [g.lower() for g in globs]
    return sorted(n for n in names if any(fnmatchcase(n.lower(), p) for p in pats))


def seconds(ts: Any, unit_s: float = 1.0) -> float:
    """A timestamp as seconds; a number is a time in units of ``unit_s`` seconds."""
    return ts.timestamp() if isinstance(ts, datetime) else float(ts) * unit_s


@dataclass(slots=True)
class PointStats:
    """Exponentially weighted mean and variance of the health readings at one operating point."""

    context: np.ndarray  # scaled context of the point (its first settled value)
    mean: np.ndarray
    var: np.ndarray
    n: int
    last_used: int

    def learn(self, y: np.ndarray, halflife: float) -> None:
        self.n += 1
        rate = max(1.0 / self.n, 1.0 - 0.5 ** (1.0 / halflife))
        diff = y - self.mean
        self.mean += rate * diff
        self.var = (1.0 - rate) * (self.var + rate * diff * diff)


class OperatingPoint(VersionedState):
    """Per-twin context split, transient guard and operating-point levels; picklable."""

    CONFIG = OperatingPointConfig
    STATE_VERSION = STATE_VERSION

    def __init__(self, config: OperatingPointConfig | None = None, halflife: float = 800.0) -> None:
        self.config = config or OperatingPointConfig()
        self.halflife = halflife
        self.reset()

    def reset(self) -> None:
        self.context: list[str] | None = None  # None: not yet seen a sample; []: no context (pass-through)
        self.health: list[str] = []
        self._scale: np.ndarray | None = None  # context scale: max(|first value|, 1)
        self._c: list[float] | None = None  # last context values (held when missing)
        self._y: list[float] | None = None  # last health values (held when missing)
        self._ref: np.ndarray | None = None  # context of the current operating point
        self._shift: np.ndarray | None = None
        self._shift_list: list[float] = []  # the same, as floats (the per-sample path avoids numpy)
        self._point: tuple[int, ...] | None = None
        self.points: dict[tuple[int, ...], PointStats] = {}
        self._settle_until = -math.inf
        self._before: np.ndarray | None = None  # detector-input level when the change began
        self._tail_sum: np.ndarray | None = None
        self._tail_n = 0
        self._clock = 0
        self.n_changes = 0
        self.n_suspect = 0

    @classmethod
    def _config_from(cls, raw: dict[str, Any]) -> OperatingPointConfig:
        return OperatingPointConfig(**{**raw, "context": tuple(raw["context"])})

    def _start_afresh(self, config: OperatingPointConfig, state: dict[str, Any]) -> None:
        self.config, self.halflife = config, state.get("halflife", 800.0)
        self.reset()

    # ------------------------------------------------------------------ vectors
    def _start(self, readings: dict[str, float]) -> None:
        names = [k for k, v in readings.items() if v is not None and math.isfinite(v)]
        # Booleans (running, valve open, …) describe the operating point; they are never scored.
        flags = [k for k in names if type(readings[k]) is bool]
        self.context = sorted({*context_names(names, self.config.context), *flags})
        self.health = sorted(set(names) - set(self.context))
        if self.context:
            c = np.array([float(readings[n]) for n in self.context])
            self._scale = np.maximum(np.abs(c), 1.0)
            self._set_shift(np.zeros(len(self.health)))

    @staticmethod
    def _held(names: list[str], readings: dict[str, float], last: list[float] | None) -> list[float]:
        """Values by name; a missing or non-finite one carries the last value forward."""
        try:  # fast path: every value present and finite
            out = [float(readings[name]) for name in names]
            if all(map(math.isfinite, out)):
                return out
        except (KeyError, TypeError):
            pass
        out = []
        for i, name in enumerate(names):
            v = readings.get(name)
            if v is None or not math.isfinite(v):
                v = last[i] if last is not None else 0.0
            out.append(float(v))
        return out

    def _key(self, c: np.ndarray) -> tuple[int, ...]:
        assert self._scale is not None
        step = max(self.config.tolerance, 1e-6) * self._scale
        return tuple(int(v) for v in np.round(c / step))

    # ------------------------------------------------------------------ main step
    def update(
        self, ts: Any, readings: dict[str, float], detector: AnomalyDetector, learn: bool = True, unit_s: float = 1.0
    ) -> Score:
        """Score one sample with ``detector`` (health readings at the reference operating point).

        ``ts`` is a datetime or a number of ``unit_s`` seconds (the settle period is in seconds).
        """
        if self.context is None:
            self._start(readings)
        if not self.context:
            return detector.update(ts, readings, learn=learn)
        cfg = self.config
        self._clock += 1
        c = self._c = self._held(self.context, readings, self._c)
        y = self._held(self.health, readings, self._y)
        t = seconds(ts, unit_s)
        if self._ref is None:
            self._ref, self._point = np.array(c), self._key(np.array(c))
        elif any(abs(a - b) > cfg.tolerance * max(abs(b), 1.0) for a, b in zip(c, self._ref.tolist(), strict=True)):
            if t >= self._settle_until:  # a new change (not a further step of a running one)
                self._before = self._level_before(detector)
                self.n_changes += 1
            self._ref = np.array(c)
            self._settle_until = t + cfg.settle_s
            self._tail_sum, self._tail_n = None, 0
        if t < self._settle_until:
            if t >= self._settle_until - cfg.tail * cfg.settle_s:
                self._tail_sum = np.array(y) if self._tail_sum is None else self._tail_sum + y
                self._tail_n += 1
            self._y = y
            return Score(ts, math.nan, False, False)
        if self._before is not None:
            self._arrive(np.array(y), learn)
        self._y = y
        shifted = {name: v - s for name, v, s in zip(self.health, y, self._shift_list, strict=True)}
        score = detector.update(ts, shifted, learn=learn)
        if score.learned and self._point is not None and self._clock % LEARN_EVERY == 0:
            self._learn_point(self._point, np.array(c), np.array(y))
        return score

    # ------------------------------------------------------------------ operating points
    def _set_shift(self, shift: np.ndarray) -> None:
        self._shift, self._shift_list = shift, shift.tolist()

    def _level_before(self, detector: AnomalyDetector) -> np.ndarray:
        """Where the detector's input was before the change: its baseline (else the point's mean, shifted)."""
        assert self._shift is not None and self._y is not None
        baseline = detector.baseline  # x' continues exactly from it
        if baseline is not None and detector.sensors == self.health:
            return np.array(baseline, dtype=float)
        stats = self.points.get(self._point) if self._point is not None else None
        level = stats.mean if stats is not None else np.array(self._y)
        return level - self._shift

    def _learn_point(self, key: tuple[int, ...], c: np.ndarray, y: np.ndarray) -> None:
        stats = self.points.get(key)
        if stats is None:
            assert self._scale is not None
            if len(self.points) >= self.config.max_points:
                del self.points[min(self.points, key=lambda k: self.points[k].last_used)]
            stats = self.points[key] = PointStats(c / self._scale, y.copy(), np.zeros_like(y), 0, 0)
        stats.learn(y, max(self.halflife / LEARN_EVERY, 1.0))
        stats.last_used = self._clock

    def expected(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Expected health levels and spreads at context ``c`` from the learned points, or None."""
        cfg = self.config
        assert self._scale is not None
        key = self._key(c)
        known = [p for p in self.points.values() if p.n >= 2]
        if not known:
            return None
        spread = np.sqrt(np.mean([p.var for p in known], axis=0))
        if key in self.points and self.points[key].n >= 2:
            level = self.points[key].mean
        else:
            x = c / self._scale
            ctx = np.array([p.context for p in known])
            if len(known) < cfg.degree + 1 or np.any(x < ctx.min(axis=0)) or np.any(x > ctx.max(axis=0)):
                return None  # not enough points, or extrapolation: nothing to expect yet
            feats = _poly(ctx, cfg.degree)
            coef, *_ = np.linalg.lstsq(feats, np.array([p.mean for p in known]), rcond=None)
            level = _poly(x[None, :], cfg.degree)[0] @ coef
        return level, np.maximum(spread, cfg.rel_spread * np.abs(level)) + 1e-12

    def _arrive(self, y: np.ndarray, learn: bool) -> None:
        """The settle period ended: accept the new point's level or keep the expected one."""
        assert self._before is not None and self._ref is not None
        cfg = self.config
        level = self._tail_sum / self._tail_n if self._tail_sum is not None and self._tail_n else y
        self._point = self._key(self._ref)
        expect = self.expected(self._ref)
        if expect is not None and np.any(np.abs(level - expect[0]) > cfg.check_sigmas * expect[1]):
            self._set_shift(expect[0] - self._before)  # the detector sees level - expected
            self.n_suspect += 1
        else:
            self._set_shift(level - self._before)
            if learn and self._point not in self.points:
                self._learn_point(self._point, self._ref, level)
        self._before, self._tail_sum, self._tail_n = None, None, 0


def _poly(x: np.ndarray, degree: int) -> np.ndarray:
    """Intercept + powers 1..degree of each context column (no cross terms)."""
    cols = [np.ones(len(x))] + [x[:, j] ** k for j in range(x.shape[1]) for k in range(1, degree + 1)]
    return np.column_stack(cols)
