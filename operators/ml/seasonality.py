"""Daily seasonality of a twin's readings: a time-of-day profile the novelty detector subtracts.

Web traffic, server load, road traffic, a building's temperature follow the clock. Without a model
of that, a detector either flags every daily peak or is so wary of them that a level shift smaller
than the daily swing goes unseen. :class:`DailyProfile` learns, per sensor, the mean reading in each
of ``BINS`` slots of the day (from normal samples, forgetting with a half-life of ``MEMORY_S``) and
switches itself on only when

* the data span at least ``COVER`` days and every slot has been seen, and
* the profile explains at least ``EXPLAINED`` of a sensor's variance.

A machine sampled at 1–10 Hz for hours never switches it on; nothing changes for it. When active,
``offset(t)`` is the profile at time ``t`` (linear between slots) — the detector scores
``x − offset(t)``.

>>> import math
>>> p = DailyProfile(1)
>>> import numpy as np
>>> for k in range(3 * 288):                       # three days at 5 min: a daily sine of amplitude 5
...     t = k * 300.0
...     _ = p.learn(np.array([20 + 5 * math.sin(2 * math.pi * t / 86400)]), t)
>>> p.active, round(float(p.offset(21600.0)[0]))   # 06:00: the top of the sine
(True, 5)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from operators.versioned_state import PackedRows, packed_zeros, restore_slots, slot_state

PERIOD_S = 86400.0
BINS = 48  # half-hour slots
COVER = 1.5  # days of data before the profile may be used
EXPLAINED = 0.3  # share of a sensor's variance the profile must explain
MEMORY_S = 7 * PERIOD_S  # half-life of what the profile remembers
PER_BIN = 20  # at most this many samples are learned per slot and visit (fast data: thinned)


class DailyProfile:
    """Per-sensor time-of-day means; picklable (part of the novelty detector's state). The profile
    itself is kept only once it is in use (``active``): until then each refit's profile is only
    checked (most twins never switch it on: ~2 KiB less per twin at 5 sensors)."""

    __slots__ = ("_packed", "active", "counts", "decayed_t", "first_t", "last_t", "n", "profile")
    # per sensor: Σ x per slot of the day, Σ x and Σ x² (rows of one array, operators/versioned_state.py)
    sums, total, total_sq = PackedRows(0, BINS), PackedRows(BINS), PackedRows(BINS + 1)

    def __init__(self, d: int) -> None:
        self._packed = packed_zeros(DailyProfile, d)
        self.counts = np.zeros(BINS)
        self.n = 0.0
        self.first_t: float | None = None
        self.last_t = -math.inf
        self.decayed_t = 0.0
        self.active = False
        self.profile: np.ndarray | None = None  # (BINS + 1) × d once active: the first slot again last

    __getstate__ = slot_state  # (``profile`` None until active: earlier layouts, read as model layout 3, had zeros)

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_slots(self, state)
        if not self.active:
            self.profile = None

    def learn(self, x: np.ndarray, t: float) -> bool:
        """Learn one normal sample at time ``t`` (s); True when the profile just switched on."""
        if t - self.last_t < PERIOD_S / BINS / PER_BIN:
            return False
        if self.first_t is None:
            self.first_t = self.decayed_t = t
        self.last_t = t
        b = int((t % PERIOD_S) * BINS / PERIOD_S) % BINS
        self.sums[b] += x
        self.counts[b] += 1.0
        self.total += x
        self.total_sq += x * x
        self.n += 1.0
        if t - self.decayed_t >= PERIOD_S / BINS:  # forget, refit, check, once per slot
            prof = self._refit(t)
            if prof is None:
                return False
            if self.active:
                self._keep(prof)
            elif self._worth_it(t, prof):
                self._keep(prof)
                self.active = True
                return True
        return False

    def offset(self, t: float) -> np.ndarray:
        """The profile at time ``t`` (linear between slot centres); only once :attr:`active`."""
        assert self.profile is not None
        pos = (t % PERIOD_S) * BINS / PERIOD_S - 0.5
        b = math.floor(pos) % BINS
        frac = pos - math.floor(pos)
        lo, hi = self.profile[b], self.profile[b + 1]
        return lo + frac * (hi - lo)

    def _refit(self, t: float) -> np.ndarray | None:
        """Forget, then the profile (BINS × d) of what is remembered (None: nothing is)."""
        keep = 0.5 ** ((t - self.decayed_t) / MEMORY_S)
        self.decayed_t = t
        for arr in (self.sums, self.counts, self.total, self.total_sq):
            arr *= keep
        self.n *= keep
        seen = self.counts > 0
        if not seen.any() or self.n <= 0:
            return None
        means = np.where(seen[:, None], self.sums / np.maximum(self.counts, 1e-12)[:, None], 0.0)
        level = (self.sums[seen].sum(axis=0)) / self.counts[seen].sum()
        return np.where(seen[:, None], means - level, 0.0)

    def _keep(self, prof: np.ndarray) -> None:
        if self.profile is None:
            self.profile = np.zeros((BINS + 1, prof.shape[1]))
        self.profile[:BINS] = prof
        self.profile[BINS] = prof[0]

    def _worth_it(self, t: float, prof: np.ndarray) -> bool:
        if self.first_t is None or t - self.first_t < COVER * PERIOD_S or (self.counts <= 0).any():
            return False
        mean = self.total / self.n
        var = np.maximum(self.total_sq / self.n - mean * mean, 1e-300)
        weights = self.counts / self.counts.sum()
        explained = (weights[:, None] * prof**2).sum(axis=0)
        return bool((explained / var >= EXPLAINED).any())
