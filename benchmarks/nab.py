"""NAB-style changepoint score as SKAB's leaderboard computes it (TSAD evaluation, written from its description).

Each true changepoint gets a scoring window of ``width`` seconds centred on it (where two windows
overlap, the later one starts where the earlier ends). In each window only the *first* detected
changepoint counts: it earns ``A_tp`` at the window's left edge, falling smoothly (a scaled
tanh) to ``A_fp`` at its right edge; a window without a detection costs ``A_fn``; every
detection outside all windows costs ``A_fp``; further detections inside a window are free.
Summed over files, the score is normalised: 100 · (S − S_null) / (S_perfect − S_null), where
the null detector (no detections) scores ``n · A_fn`` and the perfect one ``n · A_tp``.

>>> w = windows([100.0, 500.0], 30.0)
>>> w
[(85.0, 115.0), (485.0, 515.0)]
>>> c = count([w], [[85.0, 90.0, 300.0]])   # one early hit, a free repeat, one false alarm, one miss
>>> c.hits, c.false_alarms, c.misses
(1, 1, 1)
>>> round(score(c, PROFILES["standard"]), 2)  # (1 - 0.11 - 1 - (-2)) / (2 - (-2))
47.25
>>> score(count([w], [[85.0, 485.0]]), PROFILES["low_fp"])
100.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# Application profiles: (A_tp, A_fp, A_fn).
PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}


def windows(changepoints: Sequence[float], width: float) -> list[tuple[float, float]]:
    """Scoring windows centred on the (sorted) changepoints; overlaps cut the later window."""
    out: list[tuple[float, float]] = []
    for cp in sorted(changepoints):
        lo, hi = cp - width / 2, cp + width / 2
        if out and lo <= out[-1][1]:
            lo = out[-1][1]
        out.append((lo, hi))
    return out


@dataclass
class Counts:
    """Relative positions (0 = left edge, 1 = right edge) of the first detection per hit window."""

    positions: list[float] = field(default_factory=list)
    false_alarms: int = 0
    misses: int = 0

    @property
    def hits(self) -> int:
        return len(self.positions)

    @property
    def changepoints(self) -> int:
        return self.hits + self.misses


def count(
    per_file_windows: Sequence[Sequence[tuple[float, float]]], per_file_detections: Sequence[Sequence[float]]
) -> Counts:
    """Hits, false alarms and misses over all files (detections in each file's own time)."""
    c = Counts()
    for wins, dets in zip(per_file_windows, per_file_detections, strict=True):
        dets = sorted(dets)
        inside = [False] * len(dets)
        for lo, hi in wins:
            first = None
            for i, t in enumerate(dets):
                if lo <= t <= hi:
                    inside[i] = True
                    first = t if first is None else first
            if first is None:
                c.misses += 1
            else:
                c.positions.append((first - lo) / (hi - lo) if hi > lo else 0.0)
        c.false_alarms += inside.count(False)
    return c


def reward(position: float, a_tp: float, a_fp: float) -> float:
    """A_tp at the window's left edge, A_fp at its right edge, a scaled tanh in between."""
    x = math.pi * (min(max(position, 0.0), 1.0) - 0.5)
    return (a_tp - a_fp) / 2 * (1 - math.tanh(x) / math.tanh(math.pi / 2)) + a_fp


def score(c: Counts, profile: tuple[float, float, float]) -> float:
    """Normalised NAB score in % (100 perfect, 0 the null detector)."""
    a_tp, a_fp, a_fn = profile
    s = sum(reward(p, a_tp, a_fp) for p in c.positions) + c.false_alarms * a_fp + c.misses * a_fn
    null, perfect = c.changepoints * a_fn, c.changepoints * a_tp
    return 100.0 * (s - null) / (perfect - null) if perfect != null else float("nan")
