"""Bounded, calibrated anomaly scores and the one alarm that thresholds them.

Every detector of a twin (novelty, condition changes, relations, sensor faults) reports a
**surprise** ``S = −log10 p``: how unlikely its statistic is under the twin's normal behaviour
(``p`` estimated from the tail of the statistic's own recent distribution, see :class:`TailScale`).
The published ``anomaly_score`` is ``S / (S + 10)``: bounded in [0, 1), monotone in ``S``, and the
same units for every detector and every twin. ``threshold`` (default 0.5, i.e. ``p = 1e-10``)
is in those units too.

>>> round(score_of(10.0), 3), round(surprise_of(0.5), 3)
(0.5, 10.0)
>>> tail = TailScale(u90=2.0, u99=4.0)   # 90 % of normal values ≤ 2, 99 % ≤ 4
>>> tail.surprise(1.0), tail.surprise(4.0), tail.surprise(22.0)
(0.5, 2.0, 11.0)
>>> a = Alarm(threshold=0.5, exit_ratio=0.5)
>>> [a.update(s) for s in (3.0, 12.0, 9.0, 4.0, 3.0)]
[False, True, True, False, False]
>>> a = Alarm(threshold=0.5, score_halflife=1.0)          # a lasting change is news once:
>>> [(a.update(s), round(a.published(s), 1)) for s in (20.0, 20.0, 20.0, 30.0)]
[(True, 20.0), (True, 10.0), (True, 5.0), (True, 30.0)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

SURPRISE_SCALE = 10.0  # anomaly_score = S / (S + SURPRISE_SCALE): 0.5 ⇔ p = 1e-10


def score_of(surprise: float) -> float:
    """``anomaly_score`` in [0, 1) of a surprise (NaN stays NaN)."""
    if surprise != surprise:
        return surprise
    s = max(surprise, 0.0)
    return s / (s + SURPRISE_SCALE)


def surprise_of(score: float) -> float:
    """The surprise of a score (inverse of :func:`score_of`)."""
    return SURPRISE_SCALE * score / (1.0 - score) if score < 1.0 else math.inf


@dataclass(slots=True)
class TailScale:
    """Surprise of a non-negative statistic from two quantiles of its normal values.

    Below the 90 % quantile ``u90`` the surprise rises linearly to 1 (p = 0.1); above it the tail
    is taken as exponential through the 99 % quantile: each further ``u99 − u90`` is one more
    decade (p = 0.01 at ``u99``, 0.001 at ``2·u99 − u90`` …). Cheap (no search) and monotone.
    """

    u90: float = math.nan
    u99: float = math.nan

    @property
    def ready(self) -> bool:
        return self.u90 == self.u90

    def fit(self, values) -> None:
        """Fit from normal values (numpy array): ``u90`` their 90 % quantile, the tail's decade
        ``u99 − u90`` from the mean excess over ``u90`` (exponential tail: decade = ln 10 · mean
        excess, one standard error up: mean · (1 + 1/√n), so a tail seen in few values is
        extrapolated warily) — steadier than a single high quantile of a few hundred values."""
        import numpy as np

        k = int(0.9 * (len(values) - 1))
        part = np.partition(values, k)
        u90 = max(float(part[k]), 1e-12)
        over = part[k + 1 :]
        excess = float(over.mean()) - u90 if len(over) else u90
        excess *= 1.0 + 1.0 / math.sqrt(max(len(over), 1))  # one standard error up: few values, wary
        self.u90, self.u99 = u90, u90 + max(math.log(10.0) * excess, u90 * 1e-6)

    def surprise(self, x: float) -> float:
        if x <= self.u90:
            return max(x, 0.0) / self.u90
        return 1.0 + (x - self.u90) / (self.u99 - self.u90)


class Alarm:
    """Threshold with persistence and hysteresis on the surprise (the one thresholding layer).

    An alarm starts after ``enter_after`` consecutive samples at or above the threshold and ends
    after ``exit_after`` consecutive samples below ``exit_ratio`` × the threshold's surprise.
    ``length`` counts the samples of the current alarm (0: none).
    """

    __slots__ = (
        "calm",
        "decay",
        "enter",
        "enter_after",
        "exit",
        "exit_after",
        "length",
        "peak",
        "run",
        "started",
        "worst",
    )  # fmt: skip

    def __init__(
        self,
        threshold: float,
        exit_ratio: float = 0.7,
        enter_after: int = 1,
        exit_after: int = 1,
        score_halflife: float = 10.0,
    ):
        self.enter = surprise_of(threshold)
        self.exit = exit_ratio * self.enter
        self.enter_after, self.exit_after = enter_after, exit_after
        self.decay = 0.5 ** (1.0 / score_halflife)
        self.run = self.calm = self.length = 0
        self.started = 0.0  # time (s) the current alarm started
        self.peak = 0.0  # the published surprise, decaying within the episode
        self.worst = 0.0  # the episode's worst surprise

    def update(self, surprise: float, t: float = 0.0) -> bool:
        """Feed one sample's surprise at time ``t`` (s; NaN surprise: not scored, leaves the state
        alone); returns the alarm."""
        if surprise != surprise:
            return self.length > 0
        if self.length:
            self.calm = self.calm + 1 if surprise < self.exit else 0
            self.length = 0 if self.calm >= self.exit_after else self.length + 1
        else:
            self.run = self.run + 1 if surprise >= self.enter else 0
            if self.run >= self.enter_after:
                self.length, self.run, self.calm, self.started = 1, 0, 0, t
        return self.length > 0

    def published(self, surprise: float) -> float:
        """The surprise to publish: within an alarm it decays from the episode's worst unless the
        state gets clearly worse (by half the threshold's surprise, and by a quarter): a lasting
        change is news once; outside alarms the surprise itself."""
        if not self.length or surprise != surprise:
            return surprise
        if self.length == 1 or surprise > max(self.worst + 0.5 * self.enter, 1.25 * self.worst):
            self.worst = self.peak = surprise
            return surprise
        self.worst = max(self.worst, surprise)
        self.peak *= self.decay
        return min(surprise, self.peak)

    def clear(self) -> None:
        self.run = self.calm = self.length = 0


class Score(msgspec.Struct, frozen=True):
    """A twin model's output for one sample (a msgspec struct: one per reading, built cheaply).

    ``anomaly_score`` is in [0, 1) (NaN while warming up or settling); ``kind`` names the detector
    behind the current anomaly (novelty, condition, relation, sensor_fault; empty when normal);
    ``health`` is the condition index in [0, 1] (None until the reference is learned) and
    ``drivers`` the sensors that lower it (sensor → its own health); ``sensor_faults`` maps a faulty
    sensor to its fault (frozen, out_of_range, spikes, quantised, silent).
    """

    ts: Any
    anomaly_score: float
    is_anomaly: bool
    warming_up: bool
    contributions: dict[str, float] = {}  # share of the score per sensor (sum 1); a new dict per instance
    drift: bool = False  # the novelty baseline was re-learned or re-calibrated at this sample
    learned: bool = False
    kind: str = ""
    health: float | None = None
    drivers: dict[str, float] = {}
    sensor_faults: dict[str, str] = {}
