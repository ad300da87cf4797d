"""Failure prediction: remaining useful life (RUL) and probability of failure within a horizon.

Two pieces, both picklable and versioned:

* :class:`TwinHistory` (one per twin) turns readings into features — per sensor the exponentially
  weighted mean, its deviation from the twin's own first samples (per-twin normalisation) and
  the least-squares slope over the last ``slope_window`` samples, plus the age since the last
  failure/repair — and keeps them until a failure labels them.
* :class:`FleetFailureModel` (one per fleet or twin type) learns online from labelled histories:
  a failure at time ``T`` labels each kept sample at ``t`` with ``RUL = min(cap, T − t)``.
  Each history updates an exact running mean/variance of the features and a reservoir of
  labelled samples uniform over all failures so far (a stream of one engine at a time is far
  from i.i.d.); the model is then refitted on the reservoir: kernel ridge regression with an RBF
  kernel approximated by random Fourier features (``ensemble`` members of ``random_features``
  each, averaged) on the standardised features.
  Uncertainty comes from the model's own prequential errors (each new history is predicted
  before it is learned), kept per band of predicted RUL (errors grow with RUL): ``σ(band)``;
  the interval is ``RUL ± 1.64σ`` and ``P(fail within h) = Φ((h − RUL)/σ)``.

>>> import math
>>> fleet = FleetFailureModel(FailureConfig(rul_cap=50, horizon=10))
>>> for unit in range(6):
...     h = TwinHistory(fleet.config)
...     life = 60 + 5 * unit
...     for t in range(life):
...         _ = h.observe(t, {"wear": t / life + 0.01 * math.sin(t), "x": 1.0})
...     fleet.learn_history(h.on_failure(life - 1))
>>> h = TwinHistory(fleet.config)
>>> for t in range(55):
...     f = h.observe(t, {"wear": t / 65, "x": 1.0})
>>> p = fleet.predict(f)
>>> p.rul < 25, p.rul_low <= p.rul <= p.rul_high, 0.0 <= p.failure_probability <= 1.0
(True, True, True)
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.ml.config import FailureConfig
from operators.versioned_state import VersionedState

STATE_VERSION = 2  # 2: random-feature kernel ridge (1: Hoeffding trees)
Z90 = 1.6448536269514722  # two-sided 90 % interval
SIGMA_BANDS = 5  # bands of predicted RUL with their own error estimate
Z_CLIP = 20.0  # standardised features are clipped to ±Z_CLIP (a sensor far outside anything learned)


@dataclass(frozen=True, slots=True)
class RulEstimate:
    """The fleet model's answer in the failure model's time unit (``ml.time_unit_s``); the models
    flow publishes it as an :class:`operators.records.alerts.FailurePrediction` (seconds)."""

    rul: float
    rul_low: float
    rul_high: float
    failure_probability: float


class _FailureState(VersionedState):
    """Versioned state configured by a :class:`FailureConfig`; ``reset`` builds the rest."""

    CONFIG = FailureConfig
    STATE_VERSION = STATE_VERSION

    def __init__(self, config: FailureConfig | None = None) -> None:
        self.config = config or FailureConfig()
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError


class TwinHistory(_FailureState):
    """Per-twin features and the unlabelled history since the last failure or repair."""

    def reset(self) -> None:
        self.sensors: list[str] = []
        self._ewm: np.ndarray | None = None
        self._base_sum: np.ndarray | None = None
        self._base_n = 0
        self._recent: deque[np.ndarray] = deque(maxlen=self.config.slope_window)
        self.age = 0
        self.times: list[float] = []
        self.rows: list[np.ndarray] = []  # float32 feature vectors (compact state), names below
        self.names: list[str] = []
        self._skip = 0
        self.last_features: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["rows"] = np.vstack(self.rows) if self.rows else None  # one block pickles compactly
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        rows = state.get("rows")
        state["rows"] = list(rows) if rows is not None else []
        super().__setstate__(state)

    def observe(self, t: float, readings: dict[str, float], keep: bool = True) -> dict[str, float]:
        """Update with one sample and return its features; ``keep`` stores them for labelling."""
        if not self.sensors:
            self.sensors = sorted(readings)
        x = np.array([float(readings.get(s, math.nan)) for s in self.sensors])
        if self._ewm is None:
            self._ewm = np.where(np.isfinite(x), x, 0.0)
            self._base_sum = np.zeros_like(self._ewm)
        x = np.where(np.isfinite(x), x, self._ewm)  # missing: carry the smoothed value
        alpha = 1.0 - 0.5 ** (1.0 / self.config.ewm_halflife)
        self._ewm += alpha * (x - self._ewm)
        assert self._base_sum is not None
        if self._base_n < self.config.baseline_samples:
            self._base_sum += x
            self._base_n += 1
        base = self._base_sum / self._base_n
        self._recent.append(x)
        self.age += 1
        feats = {f"{s}.ewm": float(v) for s, v in zip(self.sensors, self._ewm, strict=True)}
        feats.update({f"{s}.dev": float(v) for s, v in zip(self.sensors, self._ewm - base, strict=True)})
        if self.config.slope_window > 1:
            feats.update({f"{s}.slope": float(v) for s, v in zip(self.sensors, self._slopes(), strict=True)})
        feats["age"] = float(self.age)
        self.last_features = feats
        if keep:
            self._skip = (self._skip + 1) % self.config.keep_every
            if self._skip == 0:
                if not self.names:
                    self.names = list(feats)
                self.times.append(float(t))
                self.rows.append(np.fromiter(feats.values(), np.float32, len(feats)))
                if len(self.rows) > self.config.max_history:
                    del self.times[0], self.rows[0]
        return feats

    def _slopes(self) -> np.ndarray:
        """Least-squares slope per sensor over the recent samples (per sample)."""
        n = len(self._recent)
        if n < 3:
            return np.zeros(len(self.sensors))
        y = np.asarray(self._recent)
        tt = np.arange(n) - (n - 1) / 2.0
        return tt @ (y - y.mean(axis=0)) / float(tt @ tt)

    def on_failure(self, t: float) -> list[tuple[dict[str, float], float]]:
        """Label the kept history with RUL at failure time ``t`` and start a new life."""
        cap = self.config.rul_cap
        names = self.names
        labelled = [
            (dict(zip(names, map(float, row), strict=True)), min(cap, max(0.0, t - ti)))
            for ti, row in zip(self.times, self.rows, strict=True)
        ]
        self.reset()
        return labelled

    def on_repair(self, t: float) -> None:
        """A repair without failure: the history is censored (not a label); start a new life."""
        self.reset()


class FleetFailureModel(_FailureState):
    """RUL regression learned online from the fleet's labelled histories (random-feature kernel ridge)."""

    def reset(self) -> None:
        self._rng = random.Random(self.config.seed)
        self.names: list[str] = []  # feature order, fixed by the first labelled history
        self._n = 0  # labelled samples seen (Welford mean/variance over all of them)
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._buffer_x: np.ndarray | None = None  # reservoir of labelled samples (float32 rows)
        self._buffer_y: np.ndarray | None = None
        self._members: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (W, b, weights) per member
        self.n_failures = 0
        self._sq_err = [0.0] * SIGMA_BANDS
        self._n_err = [0] * SIGMA_BANDS

    def _band(self, rul: float) -> int:
        return min(SIGMA_BANDS - 1, max(0, int(rul / self.config.rul_cap * SIGMA_BANDS)))

    def sigma(self, rul: float) -> float:
        """RMS prequential error of predictions near ``rul`` (all bands pooled while a band is thin)."""
        b = self._band(rul)
        if self._n_err[b] >= 30:
            return math.sqrt(self._sq_err[b] / self._n_err[b])
        n = sum(self._n_err)
        return math.sqrt(sum(self._sq_err) / n) if n else self.config.rul_cap / 2

    def _matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        """Feature dicts as rows in the fleet's feature order (a missing feature: the fleet mean)."""
        assert self._mean is not None
        mean = self._mean
        return np.array(
            [[f.get(n, mean[i]) for i, n in enumerate(self.names)] for f in rows], dtype=np.float64
        ).reshape(len(rows), len(self.names))

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        assert self._mean is not None and self._m2 is not None
        var = self._m2 / max(1, self._n - 1)
        sd = np.where(var > 1e-12, np.sqrt(var), 1.0)
        z = (x - self._mean) / sd
        return np.clip(np.nan_to_num(z, nan=0.0, posinf=Z_CLIP, neginf=-Z_CLIP), -Z_CLIP, Z_CLIP)

    def _predict_matrix(self, x: np.ndarray) -> np.ndarray:
        z = self._standardise(x)
        out = np.zeros(len(z))
        for w_in, b_in, weights in self._members:
            out += np.cos(z @ w_in + b_in) @ weights[:-1] + weights[-1]
        return np.clip(out / len(self._members), 0.0, self.config.rul_cap)

    def _observe(self, x: np.ndarray, y: np.ndarray) -> None:
        """Update the running mean/variance (Welford, batched) and the reservoir with new samples."""
        if self._mean is None:
            self._mean = np.zeros(x.shape[1])
            self._m2 = np.zeros(x.shape[1])
            self._buffer_x = np.empty((0, x.shape[1]), np.float32)
            self._buffer_y = np.empty(0, np.float32)
        assert self._m2 is not None and self._buffer_x is not None and self._buffer_y is not None
        n_b = len(x)
        mean_b = x.mean(axis=0)
        n = self._n + n_b
        delta = mean_b - self._mean
        self._m2 += ((x - mean_b) ** 2).sum(axis=0) + delta**2 * self._n * n_b / n
        self._mean += delta * n_b / n
        rng = self._rng
        size = self.config.buffer_size
        bx, by = list(self._buffer_x), list(self._buffer_y)
        for i in range(n_b):  # reservoir sampling over all labelled samples seen
            seen = self._n + i + 1
            if len(bx) < size:
                bx.append(x[i].astype(np.float32))
                by.append(np.float32(y[i]))
            else:
                j = rng.randrange(seen)
                if j < size:
                    bx[j], by[j] = x[i].astype(np.float32), np.float32(y[i])
        self._n = n
        self._buffer_x = np.asarray(bx, np.float32).reshape(len(bx), x.shape[1])
        self._buffer_y = np.asarray(by, np.float32)

    def _refit(self) -> None:
        """Fit each member's ridge weights on its random Fourier features of the reservoir."""
        cfg = self.config
        assert self._buffer_x is not None and self._buffer_y is not None
        z = self._standardise(self._buffer_x.astype(np.float64)).astype(np.float32)  # float32: 10× faster Gram
        y = self._buffer_y.astype(np.float64)
        d = z.shape[1]
        gamma = cfg.kernel_scale / d  # RBF kernel exp(-gamma |z - z'|^2) on standardised features
        members = []
        for m in range(cfg.ensemble):
            gen = np.random.default_rng([cfg.seed, m, d])
            w_in = gen.normal(0.0, math.sqrt(2.0 * gamma), (d, cfg.random_features))
            b_in = gen.uniform(0.0, 2.0 * math.pi, cfg.random_features)
            phi = np.hstack(
                [np.cos(z @ w_in.astype(np.float32) + b_in.astype(np.float32)), np.ones((len(z), 1), np.float32)]
            )
            reg = cfg.ridge * np.eye(phi.shape[1])
            reg[-1, -1] = 0.0  # the intercept is not shrunk
            weights = np.linalg.solve((phi.T @ phi).astype(np.float64) + reg, phi.T.astype(np.float64) @ y)
            members.append((w_in, b_in, weights))
        self._members = members

    def learn_history(self, labelled: list[tuple[dict[str, float], float]]) -> None:
        """Learn one failure's labelled history (see :meth:`TwinHistory.on_failure`)."""
        if not labelled:
            return
        if not self.names:
            self.names = list(labelled[0][0])
            self._mean = np.zeros(len(self.names))  # placeholder for _matrix until _observe
        x = self._matrix([f for f, _ in labelled])
        y = np.array([v for _, v in labelled], dtype=np.float64)
        if self.n_failures:  # prequential error: predict before learning
            for pred, target in zip(self._predict_matrix(x), y, strict=True):
                b = self._band(float(pred))
                self._sq_err[b] += float(pred - target) ** 2
                self._n_err[b] += 1
        else:
            self._mean = None  # the first history starts the running statistics
        self._observe(x, y)
        self._refit()
        self.n_failures += 1

    def predict(self, feats: dict[str, float]) -> RulEstimate:
        if not self.n_failures:
            return RulEstimate(math.nan, math.nan, math.nan, math.nan)
        rul = float(self._predict_matrix(self._matrix([feats]))[0])
        sigma = max(self.sigma(rul), 1e-9)
        prob = 0.5 * math.erfc(-((self.config.horizon - rul) / sigma) / math.sqrt(2.0))
        return RulEstimate(rul, max(0.0, rul - Z90 * sigma), rul + Z90 * sigma, prob)
