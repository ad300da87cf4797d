"""Lasting changes of a twin's novelty detector: hold an alarm's samples, re-learn them as the new
normal, and recall a state re-learned before (:class:`Regimes`, a part of
:class:`operators.ml.novelty.NoveltyDetector`).

While the twin's alarm is on, the detector keeps its samples (:meth:`Regimes.hold`, at most
``HOLD``). When the alarm has lasted ``relearn_s`` (:func:`relearn_due`), :meth:`Regimes.relearn`
makes them the new normal: the baseline moves to their recent level (and moves on with their trend
when it is significant: a steady ramp is one change, not a change per sample) and the noise model is
fitted on them. The baseline left behind is remembered (the last ``REGIMES``); ``RECALL`` samples in
a row typical of one of them bring the twin back to it without an alarm (:meth:`Regimes._recall`).
See docs/ml.md, "The fast time scale".
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from river.drift import ADWIN

from operators.ml import half_ring
from operators.ml.config import AnomalyConfig
from operators.ml.scoring import Alarm

if TYPE_CHECKING:
    from operators.ml.scoring import TailScale

HOLD = 300  # samples of an alarm kept for a re-learn (the new state's level and noise)
RECALL = 3  # samples in a row typical of a remembered state that mean the twin is back in it
REGIMES = 3  # states remembered (re-learned away from)


def relearn_due(alarm: Alarm, t: float, cfg: AnomalyConfig) -> bool:
    """An alarm has lasted ``relearn_s`` and at least a moving-average window: its state becomes
    the new normal."""
    return alarm.length > cfg.window and t - alarm.started >= cfg.relearn_s


class Regimes:
    """Hold, re-learn and recall, on the novelty detector's state (a mixin: the attributes are the
    detector's, see :meth:`operators.ml.novelty.NoveltyDetector.reset`)."""

    __slots__ = ()
    config: AnomalyConfig
    sensors: list[str]
    n_drifts: int
    _baseline: np.ndarray | None
    _calib: np.ndarray | None
    _cscale: np.ndarray | None
    _cfill: int
    _cpos: int
    _drift: ADWIN
    _epos: int
    _fresh: int
    _inv_var: np.ndarray | None
    _recalling: int
    _recent: np.ndarray | None
    _regimes: list[np.ndarray]
    _rpos: int
    _slope: np.ndarray | None
    _var: np.ndarray | None
    _window: np.ndarray | None
    _wpos: int
    _x: np.ndarray | None
    _zring: array[float]  # a list in snapshots of earlier versions (the same floats)
    _zsum: float
    _ztail: TailScale
    _refresh: Callable[[], None]  # the detector's noise model refit

    def _recall(self, x: np.ndarray, surprise: float, alarm_at: float) -> float:
        """A sample typical of a remembered state: after ``RECALL`` of them in a row the twin is
        back in that state (the baseline returns to it without an alarm); until then the surprise
        is held just below ``alarm_at``."""
        if self._inv_var is None or not self._ztail.ready:
            return surprise
        z2 = [float(((x - b) ** 2) @ self._inv_var) for b in self._regimes]
        best = int(np.argmin(z2))
        if z2[best] > self._ztail.u99:
            self._recalling = 0
            return surprise
        self._recalling += 1
        if self._recalling < RECALL:
            return min(surprise, 0.99 * alarm_at)
        assert self._window is not None and self._baseline is not None
        self._regimes[best], self._baseline = self._baseline, self._regimes[best]
        self._slope = None
        w = self.config.window
        last = self._window[[(self._wpos - 1 - i) % w for i in range(min(RECALL, w))]].mean(axis=0)
        self._window[:] = last
        self._recalling = 0
        self._fresh = 0
        self.n_drifts += 1
        return 0.0

    def hold(self) -> None:
        """Keep the last observed vector for a possible re-learn (called for samples in alarm)."""
        if self._recent is None:
            self._recent = np.zeros((HOLD, len(self.sensors)), dtype=np.float32)
        self._recent[self._rpos % HOLD] = self._x
        self._rpos += 1

    def release(self) -> None:
        """The alarm ended without a re-learn: forget the held vectors (and their buffer: most
        twins are rarely in alarm, so it is allocated again by the next one)."""
        self._rpos = 0
        self._recent = None

    def relearn(self) -> None:
        """A lasting change: the held samples (the alarm's) become the new normal — the baseline is
        their recent level, moving on with their trend when it is significant (a steady ramp is one
        change, not a change per sample), and the noise model (covariance, both tails) is fitted on
        them once there are enough."""
        cfg = self.config
        n = min(self._rpos, HOLD)
        assert self._window is not None
        if self._recent is not None and n >= max(2 * cfg.window, 10):
            order = [(self._rpos - n + i) % HOLD for i in range(n)]
            r = self._recent[order].astype(np.float64)
        else:  # few held samples (slow data): the moving-average window, in time order
            m = min(self._wpos, cfg.window)
            r = self._window[[(self._wpos - m + i) % cfg.window for i in range(m)]]
        m = len(r)
        idx = np.arange(m, dtype=np.float64) - (m - 1)  # 0 = now
        slope = np.zeros(r.shape[1])
        if m >= 5:
            ic = idx - idx.mean()
            sxx = float(ic @ ic)
            fit = (ic @ (r - r.mean(axis=0))) / sxx
            resid = r - r.mean(axis=0) - np.outer(ic, fit)
            se = np.sqrt((resid**2).sum(axis=0) / (m - 2) / sxx)
            slope = np.where(np.abs(fit) > 4.0 * se, fit, 0.0)
        self._fresh = cfg.window
        self._epos = 0
        if self._baseline is not None and self._slope is None:
            self._regimes = [*self._regimes, self._baseline.copy()][-REGIMES:]
        flat = r - np.outer(idx, slope)  # the held samples as if the trend had stopped now
        level = flat[m // 2 :].mean(axis=0)
        self._slope = slope if np.any(slope) else None
        self._baseline = level - slope * (cfg.window - 1) / 2.0  # compared with the window mean
        if m >= max(2 * cfg.window, 10):
            csum = np.cumsum(np.vstack([np.zeros(r.shape[1]), flat]), axis=0)
            devs = (csum[cfg.window :] - csum[: -cfg.window]) / cfg.window - level
            e = flat - level
            var = np.maximum((e[m // 2 :] ** 2).mean(axis=0), 1e-12)
            k = min(len(devs), cfg.calibration_size)
            assert self._calib is not None and self._cscale is not None
            zz = ((e * e) / var).sum(axis=1)
            zc = np.cumsum(np.concatenate([[0.0], zz]))
            vv = (zc[cfg.window :] - zc[: -cfg.window]) / cfg.window  # the windows' mean z², as devs
            half_ring.store(self._calib, self._cscale, 0, np.column_stack([devs, zz[-len(devs) :], vv])[-k:], kept=0)
            self._zring = array("d", zz[-cfg.window :].tolist())
            self._zsum = float(sum(self._zring))
            self._cpos = self._cfill = k
            self._var = var
            self._refresh()
        self._drift = ADWIN(delta=cfg.drift_delta)
        self._rpos = 0
        self._recent = None  # the held vectors are learned: their buffer goes until the next alarm
        self.n_drifts += 1
