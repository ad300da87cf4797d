"""Rows of numbers in half precision, each column with its own power-of-two scale (2 bytes a value).

The novelty detector's calibration ring (:mod:`operators.ml.novelty`) keeps its recent normal
samples this way: 1,000 rows of their window deviations (a column per sensor), z² and window-mean
z², half the bytes of float32. A value is stored as
``float16(x / scale)``; ``scale`` (one per column, a power of two, so dividing and multiplying are
exact) keeps the column's largest value in [2¹², 2¹³), far from float16's overflow (65,504) and
its subnormals (< 2⁻¹⁴), so every value within 2⁻²⁶ of its column's largest keeps 11 significant
bits: read back, it differs from the float32 it replaces by at most 2⁻¹¹ of itself. A column's
scale changes when a larger value arrives (:func:`store`) and when its values have shrunk
(:func:`fit`, once per turn of the ring); the kept values are rescaled then (exactly, but for
those that become subnormal).

>>> ring, scale = np.zeros((4, 2), dtype=np.float16), new_scale(2)
>>> rows = np.array([[1e-7, 3.0e5], [2e-7, -1.5e5]])
>>> store(ring, scale, 0, rows, kept=0)
>>> bool(np.all(np.abs(read(ring, scale, 2) - rows) <= 2**-11 * np.abs(rows)))
True
>>> store(ring, scale, 2, np.array([1e-3, 1.0]), kept=2)  # 10,000 × larger: column 0 rescaled
>>> [f"{v:.3g}" for v in read(ring, scale, 3)[:, 0]]
['1e-07', '2e-07', '0.001']
"""

from __future__ import annotations

import numpy as np

TOP = 2.0**13  # a column's largest stored value stays below this (float16: max 65,504)
UNSET = 2.0**-60  # the scale of a column that has held only zeros: any real value refits it


def new_scale(columns: int) -> np.ndarray:
    """The scales of a ring that has held nothing yet."""
    return np.full(columns, UNSET)


def fit(ring: np.ndarray, scale: np.ndarray, kept: int, incoming: np.ndarray | None = None) -> None:
    """Rescale each column so that the largest of its first ``kept`` values and of ``incoming``
    (absolute values, one per column) lands in [TOP/2, TOP); an all-zero column keeps its scale."""
    top = np.abs(ring[:kept]).max(axis=0).astype(np.float64) * scale if kept else np.zeros_like(scale)
    if incoming is not None:
        top = np.maximum(top, incoming)
    new = np.where(top > 0, np.ldexp(1.0, np.frexp(top)[1] - 13), scale)
    changed = new != scale
    if kept and changed.any():
        ring[:kept, changed] = ring[:kept, changed].astype(np.float64) * (scale[changed] / new[changed])
    scale[:] = new


def store(ring: np.ndarray, scale: np.ndarray, start: int, rows: np.ndarray, kept: int) -> None:
    """Write ``rows`` (one row, or k × columns) from row ``start`` on; the first ``kept`` rows hold
    values still in use (rescaled with their column when it needs a larger scale)."""
    if rows.ndim == 1:  # one row (every learned sample): checked in plain Python, cheaper for a few values
        scaled = rows / scale
        values = scaled.tolist()
        if max(values) > TOP or min(values) < -TOP:
            fit(ring, scale, kept, np.abs(rows))
            scaled = rows / scale
        ring[start] = scaled
        return
    largest = np.abs(rows).max(axis=0)
    if (largest > scale * TOP).any():
        fit(ring, scale, kept, largest)
    ring[start : start + len(rows)] = rows / scale


def read(ring: np.ndarray, scale: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows as float32 (what the ring held before it was halved, to 2⁻¹¹)."""
    out = ring[:n].astype(np.float32)
    out *= scale.astype(np.float32)
    return out
