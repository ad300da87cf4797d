"""Online multivariate anomaly detection for one twin (plain Python + numpy + River).

The detector compares a short moving average of the readings with a slowly adapting
baseline and scores the deviation with a Hotelling-T²-like distance::

    w_t   = mean(x_{t-W+1..t})                 short window (W = ``window``)
    d_t   = w_t - b_{t-1}                       deviation from the baseline
    T²_t  = d_tᵀ P d_t,  P = (S_shrunk)⁻¹       S = second moment of recent normal d
    score = T²_t / threshold                    threshold = k · q-quantile of T² over recent normal d

``b`` is an exponentially weighted mean of normal points (half-life ``baseline_halflife`` samples),
so slow drifts are absorbed while a sudden or sustained change is not. Nothing is learned from
points in alarm or when ``learn=False`` (twin in maintenance/simulating). Per-sensor contributions
``c_i = d_i (P d)_i`` sum to T² and explain every anomaly. See docs/ml.md.

>>> det = AnomalyDetector(AnomalyConfig(warmup=60, window=5))
>>> import math
>>> for t in range(200):
...     s = det.update(t, {"a": math.sin(t / 3), "b": math.cos(t / 5)})
>>> s.warming_up, s.is_anomaly
(False, False)
>>> s = det.update(200, {"a": 40.0, "b": 0.0})
>>> s.is_anomaly, max(s.contributions, key=s.contributions.get)
(True, 'a')
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
from river.drift import ADWIN

from operators.ml_config import AnomalyConfig
from operators.versioned_state import VersionedState

STATE_VERSION = 1


class Score(msgspec.Struct, frozen=True):
    """The detector's output for one sample (a msgspec struct: one per reading, built cheaply)."""

    ts: Any
    anomaly_score: float  # T² / threshold (≥ 1 means above the threshold); NaN while warming up
    is_anomaly: bool
    warming_up: bool
    contributions: dict[str, float] = {}  # share of T² per sensor (sum 1); a new dict per instance
    drift: bool = False  # a drift was detected at this sample (see docs/ml.md, "Drift")
    learned: bool = False


class AnomalyDetector(VersionedState):
    """Per-twin detector state; picklable (lives in Bytewax ``stateful_map`` state)."""

    CONFIG = AnomalyConfig
    STATE_VERSION = STATE_VERSION

    def __init__(self, config: AnomalyConfig | None = None) -> None:
        self.config = config or AnomalyConfig()
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def baseline(self) -> np.ndarray | None:
        """The current baseline ``b`` (one value per sensor in ``sensors`` order; None before learning)."""
        return self._baseline

    def reset(self) -> None:
        """Forget everything learned (``twinflow model reset``); the sensor set is re-learned too."""
        self.sensors: list[str] = []
        self.n_seen = 0
        self.n_learned = 0
        self._window: np.ndarray | None = None  # ring buffer (W × d) of recent raw vectors
        self._wpos = 0
        self._baseline: np.ndarray | None = None
        self._calib: np.ndarray | None = None  # ring buffer of normal deviations (float32)
        self._cpos = 0
        self._cfill = 0
        self._precision: np.ndarray | None = None
        self._threshold = math.inf
        self._since_refresh = 0
        self._run = 0
        self._calm = 0  # consecutive samples in alarm below exit_ratio
        self._alarm = 0  # length of the current alarm (0 = none)
        self._drift = ADWIN(delta=self.config.drift_delta)
        self._last: np.ndarray | None = None
        self.n_drifts = 0

    def _start_afresh(self, config: AnomalyConfig, state: dict[str, Any]) -> None:
        self.config = config
        self.reset()

    def _upgrade(self) -> None:
        self.__dict__.setdefault("_calm", 0)  # added within version 1 (exit_after); older states lack it

    # ------------------------------------------------------------------ scoring
    def _vector(self, readings: dict[str, float]) -> np.ndarray:
        if not self.sensors:
            self.sensors = sorted(k for k, v in readings.items() if v is not None and math.isfinite(v))
            d = len(self.sensors)
            self._window = np.zeros((self.config.window, d))
            self._calib = np.zeros((self.config.calibration_size, d), dtype=np.float32)
        values = []
        for i, name in enumerate(self.sensors):
            v = readings.get(name)
            if v is None or not math.isfinite(v):  # missing: carry the last value forward
                v = self._last[i] if self._last is not None else 0.0
            values.append(v)
        x = np.array(values, dtype=np.float64)
        self._last = x
        return x

    def update(self, ts: Any, readings: dict[str, float], learn: bool = True) -> Score:
        """Score one sample, then learn from it when ``learn`` and it is not in alarm."""
        cfg = self.config
        x = self._vector(readings)
        if not self.sensors:
            return Score(ts, math.nan, False, True)
        assert self._window is not None
        self._window[self._wpos % cfg.window] = x
        self._wpos += 1
        self.n_seen += 1
        filled = min(self._wpos, cfg.window)
        # np.add.reduce(...) / n is what ndarray.mean computes, without its Python-level wrapper.
        wmean = np.add.reduce(self._window[:filled] if filled < cfg.window else self._window, axis=0) / filled
        dev = wmean - self._baseline if self._baseline is not None else np.zeros_like(x)
        warming = self.n_learned < cfg.warmup or self._precision is None

        score, contrib, drift = math.nan, {}, False
        if not warming:
            assert self._precision is not None
            pd = self._precision @ dev
            t2 = float(dev @ pd)
            score = t2 / self._threshold
            if self._alarm:
                self._calm = self._calm + 1 if score < cfg.exit_ratio else 0
                self._alarm = 0 if self._calm >= cfg.exit_after else self._alarm + 1
            else:
                self._run = self._run + 1 if score >= 1.0 else 0
                if self._run >= cfg.enter_after:
                    self._alarm, self._run, self._calm = 1, 0, 0
            if self._alarm or score >= 1.0:
                parts = dev * pd
                total = float(parts.sum()) or 1.0
                contrib = {s: float(p) / total for s, p in zip(self.sensors, parts, strict=True)}
            if self._alarm > cfg.max_alarm:  # a lasting change of regime: accept it as the new normal
                self._accept_regime(wmean)
                drift = True
        in_alarm = bool(self._alarm)
        learned = False
        if learn and not in_alarm:
            learned = True
            drift = self._learn(x, dev, score) or drift
        return Score(ts, score, in_alarm, warming, contrib, drift, learned)

    def _learn(self, x: np.ndarray, dev: np.ndarray, score: float) -> bool:
        cfg = self.config
        self.n_learned += 1
        if self._baseline is None:
            self._baseline = x.copy()
        else:
            rate = max(1.0 / self.n_learned, 1.0 - 0.5 ** (1.0 / cfg.baseline_halflife))
            self._baseline += rate * (x - self._baseline)
        if self.n_learned > max(cfg.window, cfg.warmup // 4):  # early deviations are not yet meaningful
            assert self._calib is not None
            self._calib[self._cpos % cfg.calibration_size] = dev
            self._cpos += 1
            self._cfill = min(self._cfill + 1, cfg.calibration_size)
            self._since_refresh += 1
        drift = False
        if not math.isnan(score):
            self._drift.update(math.log1p(max(score, 0.0)))
            if self._drift.drift_detected:  # the noise level changed: re-calibrate on recent data only
                keep = min(self._cfill, max(cfg.refresh_every * 2, cfg.calibration_size // 4))
                self._keep_recent(keep)
                self._since_refresh = cfg.refresh_every
                self.n_drifts += 1
                drift = True
        if self.n_learned >= cfg.warmup and (self._precision is None or self._since_refresh >= cfg.refresh_every):
            self._refresh()
        return drift

    def _keep_recent(self, keep: int) -> None:
        assert self._calib is not None
        n = self.config.calibration_size
        idx = [(self._cpos - keep + i) % n for i in range(keep)]
        recent = self._calib[idx].copy()
        self._calib[:keep] = recent
        self._cpos, self._cfill = keep, keep

    def _refresh(self) -> None:
        """Re-estimate the precision matrix and the threshold from recent normal deviations."""
        cfg = self.config
        self._since_refresh = 0
        if self._calib is None or self._cfill < max(2 * len(self.sensors), 10):
            return
        d = self._calib[: self._cfill].astype(np.float64)
        cov = d.T @ d / len(d)
        diag = np.diag(np.diag(cov))
        cov = (1.0 - cfg.shrinkage) * cov + cfg.shrinkage * diag
        cov += np.eye(len(cov)) * (1e-9 * (np.trace(cov) / len(cov) + 1e-12))
        precision = np.linalg.pinv(cov, hermitian=True)
        t2 = np.einsum("ij,jk,ik->i", d, precision, d)
        self._precision = precision
        self._threshold = max(cfg.threshold_factor * float(np.quantile(t2, cfg.quantile)), 1e-12)

    def _accept_regime(self, wmean: np.ndarray) -> None:
        self._baseline = wmean.copy()
        self._alarm = 0
        self._run = 0
        self._calm = 0
        self._cpos = self._cfill = 0
        self._precision = None
        self.n_learned = 0  # warm up again on the new regime
        self.n_drifts += 1
