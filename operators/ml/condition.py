"""Slow time scale: condition monitoring against the twin's healthy reference, and its health index.

The fast novelty detector (:mod:`operators.ml.novelty`) follows the machine: it re-learns a lasting
change. This monitor does not: it compares the machine with a **reference** learned once, over the
first ``reference`` learned samples (commissioning / warm-up), and changed only by a ``repair``
event or ``twinflow model rebaseline`` (audited). It works on block means of ``block`` samples of
the health readings (after operating-point conditioning, sensor faults masked):

* **level** ``z_i = (m_i − μ_i) / σ_i``: each sensor's block mean against its reference mean, in
  units of the reference's own spread of block means — never below one sample's noise nor
  ``level_floor`` (1 %) of the level: a short reference cannot know the slow wander of a machine;
* **relation** ``r_i = (Λ (m − μ))_i / Λ_ii``: each sensor against its prediction from the others
  it is strongly correlated with in the reference (|ρ| ≥ 0.6; Λ = inverse of that covariance of
  block means): the leave-one-out regression residual, in units of its conditional spread (never
  below the level's floor), so a drifting transmitter or a leak shows as a broken relation even
  when each sensor alone stays plausible;
* **health** per sensor ``h_i = 1 / (1 + (e_i / alarm)^4)``, ``e_i`` = the larger of |level| and
  |relation| after exponential smoothing (half-life ``halflife`` blocks); the twin's health is the
  lowest ``h_i`` (1 = as at the reference, 0.5 at ``alarm`` reference units) and ``drivers`` the
  sensors below 0.9;
* **changes** a two-sided CUSUM per sensor on level and relation (allowance ``cusum_k``, decision
  ``cusum_h``): when one crosses, that is a *condition event* (a slow drift no per-sample threshold
  sees); the test then restarts from the current level, so a lasting change is one event while
  ``health`` keeps the deviation visible until a rebaseline.

>>> import numpy as np
>>> from operators.ml.config import ConditionConfig
>>> rng = np.random.default_rng(1)
>>> cm = ConditionMonitor(["vib", "temp"], ConditionConfig(block=10, reference=400))
>>> for t in range(3000):
...     wear = 0.0 if t < 1000 else 0.002 * (t - 1000)      # a slow ramp on vib after t = 1000
...     _ = cm.push(np.array([1.8 + wear + rng.normal(0, 0.08), 60 + rng.normal(0, 0.05)]), learn=True)
>>> cm.first_event is not None and 1000 < cm.first_event < 1400, cm.health < 0.5, list(cm.drivers)
(True, True, ['vib'])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from operators.ml.config import ConditionConfig
from operators.ml.scoring import SURPRISE_SCALE
from operators.versioned_state import PackedRows, VersionedState, packed_zeros

STATE_VERSION = 1
SHRINKAGE = 1e-3  # ridge on the relations' correlation matrix (strong relations must survive it)
RELATED = 0.6  # |correlation| of block means in the reference from which two sensors are related


class ConditionMonitor(VersionedState):
    """Per-twin reference, health index and change tests over the health sensors; picklable."""

    __slots__ = (
        "_n", "_packed", "_prec", "_related", "_relearn", "_rm2", "_rn", "config", "drivers", "event_kind",
        "events", "first_event", "health", "mu", "n_blocks", "n_events", "n_samples", "sensors", "surprise",
        "threshold_surprise",
    )  # fmt: skip
    # Vectors (one value per sensor) as rows of one array (operators/versioned_state.py, PackedRows):
    _sum, _sq = PackedRows(0), PackedRows(1)  # Σ x and Σ x² within the current block
    _ln, _lmean, _lm2 = PackedRows(2), PackedRows(3), PackedRows(4)  # level reference (Welford over blocks)
    _noise = PackedRows(5)  # Σ within-block variance (reference)
    _rmean = PackedRows(6)  # relation reference: mean of block means (all sensors)
    scale = PackedRows(7)  # reference spread of each sensor's block means
    _floor = PackedRows(8)  # the smallest spread a deviation is measured in (noise, level floor)
    _prec_sd = PackedRows(9)
    _ez, _er = PackedRows(10), PackedRows(11)  # smoothed level deviation, smoothed relation residual
    sensor_health = PackedRows(12)
    _event_ref = PackedRows(13, 2)  # where the change tests restart from (level, relation)
    _cusum = PackedRows(15, 4)  # S+ level, S- level, S+ relation, S- relation
    CONFIG = ConditionConfig
    STATE_VERSION = STATE_VERSION

    def __init__(self, sensors: list[str], config: ConditionConfig | None = None, threshold: float = 0.5) -> None:
        self.config = config or ConditionConfig()
        self.sensors = list(sensors)
        self.threshold_surprise = SURPRISE_SCALE * threshold / (1.0 - threshold)
        self.reset()

    def _start_afresh(self, config: ConditionConfig, state: dict[str, Any]) -> None:
        self.__init__(state.get("sensors", []), config)  # type: ignore[misc]

    def reset(self) -> None:
        """Forget the reference (a repair or a full rebaseline): it is learned again."""
        d = len(self.sensors)
        self._packed = packed_zeros(ConditionMonitor, d)  # the PackedRows above, all 0 but for:
        self.scale = self._prec_sd = self.sensor_health = 1.0
        self._n = 0
        self.n_blocks = 0
        self._rn = 0
        self._rm2: np.ndarray | None = np.zeros((d, d))  # co-moments of block means until the relations are fitted
        self.mu: np.ndarray | None = None  # None: the reference is still being learned
        self._relearn = np.zeros(d, dtype=bool)  # sensors re-learning their level reference
        self._prec: np.ndarray | None = None
        self._related = False  # some sensors are related (strongly correlated) in the reference
        self.health = math.nan
        self.drivers: dict[str, float] = {}
        self.surprise = 0.0  # of the change tests at the last block (held until the next)
        self.events: list[str] = []  # sensors whose change test crossed at the last block
        self.event_kind = ""  # condition (level) or relation
        self.first_event: int | None = None  # sample count of the first event (diagnostics)
        self.n_events = 0
        self.n_samples = 0

    @property
    def ready(self) -> bool:
        return self.mu is not None

    @property
    def level(self) -> np.ndarray | None:
        """The smoothed level of each sensor (what the health is judged on), once the reference is known."""
        return None if self.mu is None else self.mu + self._ez * self.scale

    # ------------------------------------------------------------------ rebaseline
    def rebaseline(self, sensor: str | None = None) -> bool:
        """Learn the reference again: of every sensor (``None``) or of one sensor's level (the
        relations are re-learned in both cases). False (nothing done) for a sensor it does not know."""
        if sensor is not None and sensor not in self.sensors:
            return False
        if sensor is None or self.mu is None:
            self.reset()
            return True
        i = self.sensors.index(sensor)
        self._ln[i] = self._lmean[i] = self._lm2[i] = self._noise[i] = 0.0
        self._relearn[i] = True
        self._ez[i] = self._er[i] = 0.0
        self._cusum[:, i] = 0.0
        self._event_ref[:, i] = 0.0
        d = len(self.sensors)
        self._rn, self._rmean, self._rm2 = 0, 0.0, np.zeros((d, d))
        self._prec = None
        return True

    # ------------------------------------------------------------------ per sample
    def push(self, x: np.ndarray, learn: bool) -> bool:
        """Add one sample (health sensors in ``sensors`` order); True when a block was completed.

        ``learn`` False (maintenance, alarm, settling): the sample is monitored but never becomes
        part of the reference."""
        self._sum += x
        self._sq += x * x
        self._n += 1
        if self._n < self.config.block:
            return False
        n = self._n
        m = self._sum / n
        var = np.maximum(self._sq / n - m * m, 0.0)
        self._sum[:] = 0.0
        self._sq[:] = 0.0
        self._n = 0
        self.push_block(m, var, n, learn)
        return True

    def restart_block(self) -> None:
        """Drop the block in progress (a setpoint change settles)."""
        self._sum[:] = 0.0
        self._sq[:] = 0.0
        self._n = 0

    def push_block(self, m: np.ndarray, var: np.ndarray, n: int, learn: bool) -> None:
        """A block of ``n`` samples by its mean and (within-block) variance — what :meth:`push`
        accumulates, for a caller that keeps the samples anyway (the twin's sensor health)."""
        self.n_samples += n
        self.n_blocks += 1
        self._block(m, var, learn)

    # ------------------------------------------------------------------ per block
    def _block(self, m: np.ndarray, var: np.ndarray, learn: bool) -> None:
        cfg = self.config
        need = max(2, cfg.reference // cfg.block)
        learning = self.mu is None or bool(self._relearn.any())  # some level reference is being learned
        if learning:
            self._learn_levels(m, var, learn, need)
            learning = self.mu is None or bool(self._relearn.any())
        if learn and self._prec is None and cfg.relations and len(m) > 1:
            assert self._rm2 is not None
            self._rn += 1
            delta = m - self._rmean
            self._rmean += delta / self._rn
            self._rm2 += np.outer(delta, m - self._rmean)
            if self._rn >= need and not learning:
                self._fit_relations()
        if self.mu is None:
            self.surprise, self.events = 0.0, []
            return
        self._monitor(m, learning)

    def _learn_levels(self, m: np.ndarray, var: np.ndarray, learn: bool, need: int) -> None:
        """The block in the level reference of the sensors learning it; their levels fitted when done."""
        learning = self._relearn if self.mu is not None else np.ones(len(m), dtype=bool)
        if learn and learning.any():
            self._ln += learning
            delta = np.where(learning, m - self._lmean, 0.0)
            self._lmean += delta / np.maximum(self._ln, 1)
            self._lm2 += delta * np.where(learning, m - self._lmean, 0.0)
            self._noise += np.where(learning, var, 0.0)
        if self.mu is None and self._ln.min() >= need:
            self._fit_levels(np.ones(len(m), dtype=bool))
        elif self._relearn.any():
            done = self._relearn & (self._ln >= need)
            if done.any():
                self._fit_levels(done)

    def _fit_levels(self, which: np.ndarray) -> None:
        cfg = self.config
        n = np.maximum(self._ln, 2)
        block_var = self._lm2 / (n - 1)
        noise_var = self._noise / n  # variance of single samples within a block
        floor = np.maximum(np.sqrt(noise_var), np.maximum(cfg.level_floor, 1e-6) * np.abs(self._lmean) + 1e-12)
        scale = np.maximum(np.sqrt(block_var), floor)
        mu = self._lmean.copy() if self.mu is None else np.where(which, self._lmean, self.mu)
        self.mu = mu
        self.scale = np.where(which, scale, self.scale)
        self._floor = np.where(which, floor, self._floor)
        self._relearn = self._relearn & ~which

    def _fit_relations(self) -> None:
        """Λ from the reference covariance of block means (lightly shrunk); each sensor's residual is
        measured in its conditional spread, never below its level floor (level_floor · |μ|)."""
        assert self._rm2 is not None
        cov = self._rm2 / max(self._rn - 1, 1)
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-300))
        corr = cov / np.outer(sd, sd)
        # Only strong relations are kept (|ρ| ≥ RELATED): a reference at one operating point has mostly
        # noise correlations, and a regression on them breaks whenever a sensor wanders.
        corr = np.where(np.abs(corr) >= RELATED, corr, 0.0)
        np.fill_diagonal(corr, 0.0)
        self._related = bool(np.any(corr))
        np.fill_diagonal(corr, 1.0 + SHRINKAGE)
        low = float(np.linalg.eigvalsh(corr).min())
        if low < SHRINKAGE:  # thresholding can leave it indefinite: the smallest ridge that cures it
            corr += np.eye(len(corr)) * (SHRINKAGE - low)
        prec = np.linalg.pinv(corr / np.outer(1.0 / sd, 1.0 / sd), hermitian=True)
        self._prec = prec
        self._rm2 = None  # not needed until the relations are learned again (d² floats)
        lam = np.maximum(np.diag(prec), 1e-300)
        # r_i = (Λ d)_i / Λ_ii is the residual of sensor i given the others; in units of its conditional
        # spread 1/√Λ_ii, never below the level's floor (one sample's noise, level_floor · |μ|)
        self._prec_sd = lam * np.maximum(1.0 / np.sqrt(lam), self._floor)

    def _monitor(self, m: np.ndarray, relearning: bool) -> None:
        """Health and change tests of a block (``relearning``: some sensors re-learn their level)."""
        cfg = self.config
        assert self.mu is not None
        dev = np.where(self._relearn, 0.0, m - self.mu) if relearning else m - self.mu
        z = dev / self.scale
        rate = 1.0 - 0.5 ** (1.0 / cfg.halflife)
        self._ez += rate * (z - self._ez)
        rel = self._prec is not None and self._related
        if rel:
            assert self._prec is not None
            r = self._prec.dot(dev) / self._prec_sd  # ndarray.dot: as @, a quarter of its overhead
            if relearning:
                r = np.where(self._relearn, 0.0, r)
            self._er += rate * (r - self._er)
            e = np.maximum(np.abs(self._ez), np.abs(self._er))
        else:  # no sensor is related to another: the relation residual is the level itself
            r = z
            e = np.abs(self._ez)
        h = 1.0 / (1.0 + (e / cfg.alarm) ** 4)
        self.sensor_health = h
        self.health = float(np.minimum.reduce(h))
        if self.health < 0.9:
            low = (h < 0.9).nonzero()[0]
            self.drivers = {self.sensors[i]: round(float(h[i]), 4) for i in low[np.argsort(h[low])]}
        elif self.drivers:
            self.drivers = {}
        # change tests, restarting from where the last event left each sensor
        k = cfg.cusum_k
        zs = z - self._event_ref[0]
        rs = r - self._event_ref[1]
        c = self._cusum
        c[0] = np.maximum(0.0, c[0] + zs - k)
        c[1] = np.maximum(0.0, c[1] - zs - k)
        if rel:
            c[2] = np.maximum(0.0, c[2] + rs - k)
            c[3] = np.maximum(0.0, c[3] - rs - k)
        if float(np.maximum.reduce(c, axis=None)) < cfg.cusum_h:  # the usual block: no test crossed
            self.surprise, self.events = 0.0, []
            return
        top = np.maximum.reduce(c, axis=0)
        # a change back towards the reference is a recovery, not news: it restarts the test silently;
        # after an event the next one needs the deviation to have doubled (a ramp is a few events)
        away = (np.abs(z) > 2.0 * np.abs(self._event_ref[0])) | (np.abs(r) > 2.0 * np.abs(self._event_ref[1]))
        peak = np.where(away, top, 0.0)
        done = (top >= cfg.cusum_h).nonzero()[0]
        crossed = (peak >= cfg.cusum_h).nonzero()[0]
        # an event is news at the threshold's surprise (up to twice it for a sudden large change)
        self.surprise = min(float(peak.max()) / cfg.cusum_h, 2.0) * self.threshold_surprise if len(crossed) else 0.0
        self.events = [self.sensors[i] for i in crossed]
        if len(crossed):
            level_won = c[:2, crossed].max() >= c[2:, crossed].max()
            self.event_kind = "condition" if level_won else "relation"
            self.n_events += 1
            if self.first_event is None:
                self.first_event = self.n_samples
        if len(done):
            self._event_ref[0, done] = z[done]
            self._event_ref[1, done] = r[done]
            c[:, done] = 0.0
