"""The per-sample detectors' cheaper numpy forms give the same bits as the plain ones they replace
(operators/ml/novelty.py, sensor_health.py, condition.py)."""

import math

import numpy as np

from operators.ml.config import AnomalyConfig
from operators.ml.novelty import NoveltyDetector
from operators.ml.sensor_health import median_rows


def test_median_rows_is_np_median_bit_for_bit() -> None:
    """Blocks of absolute steps of every size and magnitude, with zeros, ties, inf and NaN."""
    rng = np.random.default_rng(3)
    for _ in range(3000):
        n, d = int(rng.integers(1, 14)), int(rng.integers(1, 7))
        a = np.abs(rng.normal(size=(n, d)) * 10.0 ** rng.uniform(-300, 300, size=(n, d)))
        kind = rng.integers(0, 5)
        if kind == 1:
            a[rng.integers(0, n), rng.integers(0, d)] = math.nan
        elif kind == 2:
            a[rng.integers(0, n), rng.integers(0, d)] = math.inf
        elif kind == 3:
            a = np.round(a / a.max()) * 0.25  # ties and zeros
        with np.errstate(over="ignore"):
            assert median_rows(a).tobytes() == np.median(a, axis=0).tobytes()


def test_observed_distances_are_the_plain_quadratic_forms() -> None:
    """T² and z² of every scored sample equal ``dev @ P @ dev`` and ``(e * e) @ (1/v)``."""
    rng = np.random.default_rng(4)
    det = NoveltyDetector(AnomalyConfig(warmup=60, window=5))
    checked = 0
    for t in range(600):
        x = np.array([math.sin(t / 7), math.cos(t / 11), 3.0]) + rng.normal(0.0, 0.1, 3)
        s = det.observe(det.vector(dict(zip("abc", x.tolist(), strict=True))))
        if s == s:
            assert det._t2 == float(det._dev @ det._precision @ det._dev)
            assert det._z2 == float((det._e * det._e) @ det._inv_var)
            checked += 1
        det.learn(s)
    assert checked > 400
