"""Failure prediction: remaining useful life (RUL) and probability of failure within a horizon.

Two pieces, both picklable and versioned:

* :class:`TwinHistory` (one per twin) turns readings into features — per sensor the exponentially
  weighted mean, its deviation from the twin's own first samples (per-twin normalisation) and
  the least-squares slope over the last ``slope_window`` samples, plus the age since the last
  failure/repair — and keeps them until a failure labels them.
* :class:`FleetFailureModel` (one per fleet or twin type) learns online from labelled histories:
  a failure at time ``T`` labels each kept sample at ``t`` with ``RUL = min(cap, T − t)``.
  The history is learned in shuffled order, interleaved with samples replayed from a reservoir of
  earlier failures (a stream of one engine at a time is far from i.i.d.). The model is a River
  Hoeffding tree with linear leaves on standardised features (``ensemble`` of them, averaged).
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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from river import linear_model, optim, preprocessing, tree

from operators.ml_config import FailureConfig

STATE_VERSION = 1
Z90 = 1.6448536269514722  # two-sided 90 % interval
SIGMA_BANDS = 5  # bands of predicted RUL with their own error estimate


@dataclass(frozen=True, slots=True)
class FailurePrediction:
    rul: float
    rul_low: float
    rul_high: float
    failure_probability: float


class _Versioned:
    """Pickle with a version; an unknown version starts afresh instead of misreading state."""

    config: FailureConfig

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["config"] = asdict(self.config)
        state["_v"] = STATE_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("_v", None)
        config = FailureConfig(**state.pop("config"))
        if version != STATE_VERSION:
            self.__init__(config)  # type: ignore[misc]
            return
        self.__dict__.update(state)
        self.config = config


class TwinHistory(_Versioned):
    """Per-twin features and the unlabelled history since the last failure or repair."""

    def __init__(self, config: FailureConfig | None = None) -> None:
        self.config = config or FailureConfig()
        self.reset()

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


class FleetFailureModel(_Versioned):
    """RUL regression learned online from the fleet's labelled histories."""

    def __init__(self, config: FailureConfig | None = None) -> None:
        self.config = config or FailureConfig()
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        self.models = [
            preprocessing.StandardScaler()
            | tree.HoeffdingTreeRegressor(
                leaf_model=linear_model.LinearRegression(optimizer=optim.Adam(cfg.learning_rate))
            )
            for _ in range(cfg.ensemble)
        ]
        self._rng = random.Random(cfg.seed)
        self._buffer: list[tuple[dict[str, float], float]] = []
        self._buffer_seen = 0
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

    def _clipped(self, feats: dict[str, float]) -> float:
        mean = sum(float(m.predict_one(feats)) for m in self.models) / len(self.models)
        return min(self.config.rul_cap, max(0.0, mean))

    def learn_history(self, labelled: list[tuple[dict[str, float], float]]) -> None:
        """Learn one failure's labelled history (see :meth:`TwinHistory.on_failure`)."""
        if not labelled:
            return
        rng = self._rng
        order = list(labelled)
        if self.n_failures:  # prequential error: predict before learning
            for feats, y in order:
                pred = self._clipped(feats)
                b = self._band(pred)
                self._sq_err[b] += (pred - y) ** 2
                self._n_err[b] += 1
        for model in self.models:  # each member sees its own order and replay draws
            rng.shuffle(order)
            for feats, y in order:
                model.learn_one(feats, y)
                for _ in range(self.config.replay if self._buffer else 0):
                    f2, y2 = self._buffer[rng.randrange(len(self._buffer))]
                    model.learn_one(f2, y2)
        for item in order:  # reservoir sampling over all labelled samples seen
            self._buffer_seen += 1
            if len(self._buffer) < self.config.buffer_size:
                self._buffer.append(item)
            else:
                j = rng.randrange(self._buffer_seen)
                if j < self.config.buffer_size:
                    self._buffer[j] = item
        self.n_failures += 1

    def predict(self, feats: dict[str, float]) -> FailurePrediction:
        if not self.n_failures:
            return FailurePrediction(math.nan, math.nan, math.nan, math.nan)
        rul = self._clipped(feats)
        sigma = max(self.sigma(rul), 1e-9)
        prob = 0.5 * math.erfc(-((self.config.horizon - rul) / sigma) / math.sqrt(2.0))
        return FailurePrediction(rul, max(0.0, rul - Z90 * sigma), rul + Z90 * sigma, prob)
