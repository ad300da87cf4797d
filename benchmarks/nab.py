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


# ----------------------------------------------------------------------------- NAB corpus scoring
# The Numenta Anomaly Benchmark's own protocol (written from its published scorer, nab/sweeper.py):
# per file, a window of 10 % of its rows / number of anomalies centred on each labelled anomaly;
# the first 15 % of rows (at most 750) are probationary (not scored); a detection in a window is
# worth A_tp · σ(position) (1 at the window's left edge, 0 at its right edge), a window without one
# costs A_fn, a detection outside every window costs A_fp · σ(distance past the previous window)
# (almost nothing right after a window, the full A_fp a window's width later or before any window).
# The threshold on ``anomaly_score`` is chosen for the whole corpus (the best one per profile).
NAB_PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 0.11, 1.0),
    "reward_low_fp": (1.0, 0.22, 1.0),
    "reward_low_fn": (1.0, 0.11, 2.0),
}  # (tpWeight, fpWeight, fnWeight) as in NAB's config/profiles.json


def scaled_sigmoid(position: float) -> float:
    """NAB's weight of a detection at ``position`` relative to a window (−1 left edge, 0 right edge)."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_windows(n_rows: int, anomalies: Sequence[int]) -> list[tuple[int, int]]:
    """Row-index windows centred on each anomaly, total width 10 % of the rows / number of anomalies."""
    if not anomalies:
        return []
    half = int(0.10 * n_rows / len(anomalies)) // 2
    return [(max(a - half, 0), min(a + half, n_rows - 1)) for a in sorted(anomalies)]


def probation(n_rows: int) -> int:
    return int(min(math.floor(0.15 * n_rows), 0.15 * 5000))


def _row_weights(n_rows: int, wins: Sequence[tuple[int, int]], profile: tuple[float, float, float]):
    """(window index or -1, weight) per scorable row, as NAB's sweeper computes them."""
    tp_w, fp_w, _ = profile
    max_tp = scaled_sigmoid(-1.0)
    out = []
    start = probation(n_rows)
    wi, prev_right, prev_width = 0, None, None
    for i in range(n_rows):
        while wi < len(wins) and i > wins[wi][1]:
            prev_right, prev_width = wins[wi][1], wins[wi][1] - wins[wi][0] + 1
            wi += 1
        if wi < len(wins) and wins[wi][0] <= i <= wins[wi][1]:
            lo, hi = wins[wi]
            width = hi - lo + 1
            weight, win = scaled_sigmoid(-(hi - i + 1) / width) * tp_w / max_tp, wi
        else:
            pos = 3.0 if prev_right is None else abs(prev_right - i) / max(prev_width - 1, 1)
            weight, win = scaled_sigmoid(pos) * fp_w, -1
        if i >= start:
            out.append((win, weight))
    return out


def corpus_score(
    files: Sequence[tuple[Sequence[float], Sequence[int]]],
    profile: tuple[float, float, float],
    threshold: float | None = None,
) -> tuple[float, float, dict[str, int]]:
    """(normalised score, threshold, counts) of a corpus of (anomaly scores, anomaly rows) files.

    100 = every window detected at its left edge and nothing else; 0 = the null detector. Without
    ``threshold`` the best one for the whole corpus is found by sweeping the scores from high to
    low, as NAB's optimizer does; NaN scores count as 0.
    """
    _, _, fn_w = profile
    rows: list[tuple[float, int, float]] = []  # (score, global window id or -1, weight)
    n_windows = 0
    for scores, anomalies in files:
        wins = nab_windows(len(scores), anomalies)
        start = probation(len(scores))
        for (win, weight), s in zip(_row_weights(len(scores), wins, profile), list(scores)[start:], strict=True):
            s = 0.0 if s is None or s != s else float(s)
            rows.append((s, n_windows + win if win >= 0 else -1, weight))
        n_windows += len(wins)
    rows.sort(key=lambda r: -r[0])
    parts = [-fn_w] * n_windows
    total_windows = -fn_w * n_windows
    fp_sum = 0.0
    best = (total_windows, 1.1)
    hits = fps = 0
    best_counts = {"windows": n_windows, "hits": 0, "false_rows": 0}
    i = 0
    while i < len(rows):
        thr = rows[i][0]
        if threshold is not None and thr < threshold:
            break
        while i < len(rows) and rows[i][0] == thr:
            _, win, weight = rows[i]
            if win < 0:
                fp_sum += weight
                fps += 1
            elif weight > parts[win]:
                if parts[win] == -fn_w:
                    hits += 1
                total_windows += weight - parts[win]
                parts[win] = weight
            i += 1
        if threshold is not None or total_windows + fp_sum > best[0]:
            best = (total_windows + fp_sum, thr if threshold is None else threshold)
            best_counts = {"windows": n_windows, "hits": hits, "false_rows": fps}
    null, perfect = -fn_w * n_windows, profile[0] * n_windows
    norm = 100.0 * (best[0] - null) / (perfect - null) if perfect != null else float("nan")
    return norm, best[1], best_counts
