"""The per-sample detectors' cheaper numpy forms give the same bits as the plain ones they replace
(operators/ml/novelty.py, sensor_health.py, condition.py)."""

import math

import numpy as np

from operators.ml import half_ring
from operators.ml.config import AnomalyConfig
from operators.ml.novelty import NoveltyDetector, row_sums
from operators.ml.scoring import TailScale
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


def test_row_sums_are_numpys_bit_for_bit() -> None:
    """float32 rows of 1 to 12 values (the noise refit's quadratic-form parts), with zeros of both
    signs, huge and tiny magnitudes, inf and NaN: what ``m.sum(axis=1)`` gives."""
    rng = np.random.default_rng(5)
    for _ in range(2000):
        n, d = int(rng.integers(1, 50)), int(rng.integers(1, 13))
        m = (rng.normal(size=(n, d)) * 10.0 ** rng.uniform(-30, 30, size=(n, d))).astype(np.float32)
        kind = rng.integers(0, 4)
        if kind == 1:
            m[rng.random((n, d)) < 0.3] = rng.choice([0.0, -0.0])
        elif kind == 2:
            m[rng.integers(0, n), rng.integers(0, d)] = rng.choice([math.inf, -math.inf, math.nan])
        with np.errstate(over="ignore", invalid="ignore"):
            assert row_sums(m).tobytes() == m.sum(axis=1).tobytes()


def test_noise_refit_is_the_plain_one() -> None:
    """The refit reads the calibration ring once: the precision and the three tails equal those of
    the deviations and z² columns read apart, for 1 to 12 sensors of any scale."""
    rng = np.random.default_rng(6)
    for d in (1, 2, 5, 8, 12):
        det = NoveltyDetector(AnomalyConfig(warmup=100, calibration_size=300, refresh_every=20))
        mix, scale = rng.normal(size=(d, d)), 10.0 ** rng.uniform(-4, 6, size=d)
        for t in range(700):
            det.learn(det.observe((mix @ rng.normal(size=d)) * scale + scale * math.sin(t / 40)))
        assert det._precision is not None and det._cscale is not None
        n = det._cfill  # the columns read apart, as before
        dev = half_ring.read(det._calib[:, :-2], det._cscale[:-2], n)
        z, v = half_ring.read(det._calib[:, -2:], det._cscale[-2:], n).T
        det._refresh()
        cov = (dev.T @ dev).astype(np.float64) / len(dev)
        s = np.sqrt(np.maximum(cov.diagonal(), det._still_floor()))
        corr = cov / np.outer(s, s) * (1.0 - det.config.shrinkage)
        np.fill_diagonal(corr, 1.0 + 1e-9)
        inv = np.linalg.inv(corr)
        assert det._precision.tobytes() == (inv / np.outer(s, s)).tobytes()
        u = dev / s.astype(np.float32)
        tails = [TailScale() for _ in range(3)]
        parts = ((u @ inv.astype(np.float32)) * u).sum(axis=1)
        for tail, values in zip(tails, (parts, z[z > 0], v[v > 0]), strict=True):
            tail.fit(values)
        assert [(t.u90, t.u99) for t in (det._tail, det._ztail, det._vtail)] == [(t.u90, t.u99) for t in tails]
