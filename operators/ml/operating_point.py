"""Operating-point conditioning of a twin's anomaly detector: a setpoint change is not a fault.

Flow, head, power, vibration and temperature all move when an operator (or reconciliation's
``digital_wins`` command) changes a speed setpoint. Readings whose names match the ``context``
globs of :class:`~operators.ml.config.OperatingPointConfig` are the operating conditions: they
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

Without context readings :meth:`OperatingPoint.prepare` returns the readings unchanged. The twin's
model (:class:`operators.ml.twin_model.TwinModel`) runs it before its detectors:

>>> from operators.ml.config import AnomalyConfig, ModelConfig, OperatingPointConfig
>>> from operators.ml.twin_model import TwinModel
>>> import random
>>> rng = random.Random(0)
>>> m = TwinModel(ModelConfig(AnomalyConfig(warmup=50, window=3), operating_point=OperatingPointConfig(settle_s=20),
...                           time_unit_s=1.0))
>>> def pump(t, sp):
...     return {"speed_sp_rpm": sp, "flow_m3h": sp / 10 + rng.gauss(0, 0.1), "power_kw": (sp / 1450) ** 3 * 18}
>>> flags = [m.update(t, pump(t, 1450.0 if t < 300 else 1200.0)).score.is_anomaly for t in range(600)]
>>> any(flags), m.operating_point.context, m.anomaly.sensors
(False, ['speed_sp_rpm'], ['flow_m3h', 'power_kw'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.ml.config import OperatingPointConfig
from operators.ml.counters import matches
from operators.ml.novelty import NoveltyDetector, seconds
from operators.versioned_state import VersionedState, canonical

STATE_VERSION = 2  # 2: settle until stable
LEARN_EVERY = 10  # operating-point statistics learn from every 10th normal sample (half-life scaled)


def context_names(names: list[str], globs: tuple[str, ...]) -> list[str]:
    """The reading names that match a context glob (case-insensitive), sorted."""
    return sorted(n for n in names if matches(n, globs))


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

    __slots__ = (
        "_before", "_c", "_changed_at", "_clock", "_fast", "_marks", "_point", "_ref", "_scale",
        "_settle_until", "_shift", "_shift_list", "_t_last", "_y", "config", "context", "flags", "halflife",
        "health", "n_changes", "n_suspect", "points",
    )  # fmt: skip
    CONFIG = OperatingPointConfig
    STATE_VERSION = STATE_VERSION

    def __init__(
        self, config: OperatingPointConfig | None = None, halflife: float = 800.0, flags: frozenset[str] = frozenset()
    ) -> None:
        self.config = config or OperatingPointConfig()
        self.halflife = halflife
        self.flags = flags  # numeric readings that are context as booleans are (states: operators/ml/states.py)
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
        self._fast: np.ndarray | None = None  # moving average of the health readings while a change settles
        self._marks: list[tuple[float, np.ndarray]] = []  # (time, that average) every half-life
        self._t_last = 0.0
        self._changed_at = -math.inf
        self._clock = 0
        self.n_changes = 0
        self.n_suspect = 0

    @classmethod
    def _config_from(cls, raw: dict[str, Any]) -> OperatingPointConfig:
        return canonical(OperatingPointConfig(**{**raw, "context": tuple(raw["context"])}))

    def _start_afresh(self, config: OperatingPointConfig, state: dict[str, Any]) -> None:
        self.config, self.halflife = config, state.get("halflife", 800.0)
        self.flags = state.get("flags", frozenset())
        self.reset()

    def _upgrade(self) -> None:
        if not hasattr(self, "flags"):  # a snapshot from before states
            self.flags = frozenset()

    # ------------------------------------------------------------------ vectors
    def _start(self, readings: dict[str, float]) -> None:
        names = [k for k, v in readings.items() if v is not None and math.isfinite(v)]
        # Booleans (running, valve open, …) and states sent as numbers describe the operating point;
        # they are never scored.
        flags = [k for k in names if type(readings[k]) is bool or k in self.flags]
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
    def prepare(
        self,
        ts: Any,
        readings: dict[str, float],
        detector: NoveltyDetector,
        learn: bool = True,
        unit_s: float = 1.0,
        noise: np.ndarray | None = None,
        level: np.ndarray | None = None,
        t: float | None = None,
    ) -> dict[str, float] | np.ndarray | None:
        """The readings the detectors see: the health readings at the reference operating point (a
        vector in ``health`` order), or None while a change settles. Without context readings:
        ``readings`` unchanged.

        ``ts`` is a datetime or a number of ``unit_s`` seconds (the settle period is in seconds);
        ``detector`` gives the level the translated readings continue from after a change;
        ``noise`` (per health reading, when known) is how much a settled reading still moves, ``level``
        (when known) where the readings were lately (in translated units); ``t``: ``ts`` in seconds
        (:func:`seconds`), when the caller has it. Call
        :meth:`learned` after a sample the detector learned from.
        """
        if self.context is None:
            self._start(readings)
        if not self.context:
            return readings
        cfg = self.config
        self._clock += 1
        c = self._c = self._held(self.context, readings, self._c)
        y = self._held(self.health, readings, self._y)
        if t is None:
            t = seconds(ts, unit_s)
        if self._ref is None:
            self._ref, self._point = np.array(c), self._key(np.array(c))
        elif any(abs(a - b) > cfg.tolerance * max(abs(b), 1.0) for a, b in zip(c, self._ref.tolist(), strict=True)):
            if t >= self._settle_until:  # a new change (not a further step of a running one)
                self._before = self._level_before(detector, level)
                self.n_changes += 1
            self._ref = np.array(c)
            self._settle_until = t + cfg.settle_s
            self._changed_at = t
            self._fast, self._marks = None, []
        if self._before is not None:
            if self._settling(t, np.array(y), noise):
                self._y = y
                return None
            self._arrive(learn)
        self._y = y
        assert self._shift is not None
        return np.array(y) - self._shift

    def learned(self) -> None:
        """The last prepared sample was learned by the detector: update its operating point's statistics."""
        if self.context and self._point is not None and self._clock % LEARN_EVERY == 0:
            assert self._c is not None and self._y is not None
            self._learn_point(self._point, np.array(self._c), np.array(self._y))

    @property
    def shift(self) -> np.ndarray | None:
        """What is subtracted from the health readings (None without context readings)."""
        return self._shift if self.context else None

    # ------------------------------------------------------------------ operating points
    def _set_shift(self, shift: np.ndarray) -> None:
        self._shift, self._shift_list = shift, shift.tolist()

    def _level_before(self, detector: NoveltyDetector, level: np.ndarray | None) -> np.ndarray:
        """Where the detectors' input was just before the change: ``level`` (the condition monitor's
        smoothed level, when it has one), else the novelty detector's baseline (else the point's
        mean, shifted). ``x'`` continues from it, so a deviation that was there before the change —
        a fault, a slow drift the novelty baseline had absorbed — is still there after it."""
        assert self._shift is not None and self._y is not None
        if level is not None and len(level) == len(self.health):
            return np.array(level, dtype=float)
        baseline = detector.baseline
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
            feats = _poly(ctx, cfg.degree)
            dof = len(known) - feats.shape[1]
            if dof < 2 or np.any(x < ctx.min(axis=0)) or np.any(x > ctx.max(axis=0)):
                return None  # too few points to judge the fit, or extrapolation: nothing to expect yet
            means = np.array([p.mean for p in known])
            coef, *_ = np.linalg.lstsq(feats, means, rcond=None)
            row = _poly(x[None, :], cfg.degree)[0]
            level = row @ coef
            # the fit's own error at x: residual spread across the points, inflated by the leverage
            fit_var = ((feats @ coef - means) ** 2).sum(axis=0) / dof
            leverage = float(row @ np.linalg.pinv(feats.T @ feats) @ row)
            spread = np.sqrt(spread**2 + fit_var * (1.0 + leverage))
        return level, np.maximum(spread, cfg.rel_spread * np.abs(level)) + 1e-12

    def _settling(self, t: float, y: np.ndarray, noise: np.ndarray | None) -> bool:
        """True while a change settles: at least ``settle_s``, then until the health readings stop
        moving — their moving average (half-life ``tail · settle_s / 2``) changed by less than four
        times their noise over the last four half-lives — at most ``settle_max_s``."""
        cfg = self.config
        half = max(cfg.tail * cfg.settle_s / 2.0, 1e-9)
        if self._fast is None:
            self._fast, self._marks = y.copy(), [(t, y.copy())]
        else:
            self._fast += (1.0 - 0.5 ** (max(t - self._t_last, 0.0) / half)) * (y - self._fast)
            if t - self._marks[-1][0] >= half:  # a snapshot of the average every half-life
                self._marks = [*self._marks[-4:], (t, self._fast.copy())]
        self._t_last = t
        if t < self._settle_until:
            return True
        if t >= self._changed_at + max(cfg.settle_max_s, cfg.settle_s):
            return False
        then, past = self._marks[0]
        if t - then < 3.5 * half:
            return True
        tol = np.maximum(2.0 * (noise if noise is not None else 0.0), 1e-3 * np.abs(self._fast)) + 1e-12
        return bool(np.any(np.abs(self._fast - past) > tol))

    def _arrive(self, learn: bool) -> None:
        """The change settled: accept the new point's level or keep the expected one."""
        assert self._before is not None and self._ref is not None and self._fast is not None
        cfg = self.config
        level = self._fast.copy()
        self._point = self._key(self._ref)
        expect = self.expected(self._ref)
        if expect is not None and np.any(np.abs(level - expect[0]) > cfg.check_sigmas * expect[1]):
            self._set_shift(expect[0] - self._before)  # the detector sees level - expected
            self.n_suspect += 1
        else:
            self._set_shift(level - self._before)
            if learn and self._point not in self.points:
                self._learn_point(self._point, self._ref, level)
        self._before, self._fast, self._marks = None, None, []


def _poly(x: np.ndarray, degree: int) -> np.ndarray:
    """Intercept + powers 1..degree of each context column (no cross terms)."""
    cols = [np.ones(len(x))] + [x[:, j] ** k for j in range(x.shape[1]) for k in range(1, degree + 1)]
    return np.column_stack(cols)
