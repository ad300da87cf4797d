"""The novelty detector's calibration ring in half precision (operators/ml/half_ring.py): what it
keeps, how far the fitted noise model and the scores move from the float32 ring it replaced, and
that snapshots holding the float32 ring resume."""

import copy
import pickle

import numpy as np
import pytest

from operators.ml import half_ring
from operators.ml.config import AnomalyConfig
from operators.ml.novelty import NoveltyDetector


def test_values_keep_11_bits_across_rescales() -> None:
    """Columns of very different magnitudes, growing and shrinking: every value read back is within
    2⁻¹¹ of itself (values within 2⁻²⁰ of their column's largest), however the scales moved."""
    rng = np.random.default_rng(1)
    n, cols = 300, 4
    ring, scale = np.zeros((n, cols), dtype=np.float16), half_ring.new_scale(cols)
    exact = np.zeros((n, cols))
    size = np.array([1e-9, 1.0, 1e6, 0.0])  # the last column: a constant sensor
    for k in range(3000):
        level = size * (1e3 if 1000 <= k < 1100 else 1.0)  # a burst of values 1,000 × larger
        row = rng.normal(0.0, 1.0, cols) * level
        half_ring.store(ring, scale, k % n, row, kept=min(k, n))
        exact[k % n] = row
        if k % 50 == 0:
            half_ring.fit(ring, scale, min(k + 1, n))
        got = half_ring.read(ring, scale, min(k + 1, n)).astype(np.float64)
        want = exact[: min(k + 1, n)]
        big = np.abs(want) >= 2**-20 * np.abs(want).max(axis=0)
        assert np.all(np.abs(got - want)[big] <= 2**-11 * np.abs(want)[big])
        assert np.all(got[:, 3] == 0.0)
    assert np.isfinite(ring.astype(np.float64)).all()


def test_noise_model_and_scores_stay_within_a_thousandth_of_the_float32_ring(monkeypatch) -> None:
    """The detector fed a correlated stream, next to a copy whose ring holds the same rows in float32
    (the layout before: deviations, z² and window-mean z²): the precision matrix, the three tails and
    the surprise of new samples differ by less than 2e-3 relative (measured: ≈ 1e-4; up to 1.1e-3 for a
    sample thousands of spreads off on the smallest sensor, which the covariance no longer muffles)."""
    rng = np.random.default_rng(2)
    mix = rng.normal(size=(5, 5))
    det = NoveltyDetector(AnomalyConfig(seasonal=False))
    shadow = np.zeros((det.config.calibration_size, 5 + 2), dtype=np.float32)
    store = half_ring.store

    def store_and_shadow(ring, scale, start, rows, kept):
        shadow[start : start + (len(rows) if rows.ndim == 2 else 1)] = rows
        store(ring, scale, start, rows, kept)

    monkeypatch.setattr(half_ring, "store", store_and_shadow)
    for _ in range(2000):
        det.learn(det.observe(rng.normal(size=5) @ mix * [1e-3, 1.0, 10.0, 1e4, 2.0] + 50.0))
    assert det.n_drifts == 0 and det._cfill == det.config.calibration_size
    ref = copy.deepcopy(det)
    ref._calib, ref._cscale = shadow, np.ones(5 + 2)  # the float32 ring as it was (scale 1: read as it is)
    det._refresh()
    ref._refresh()

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    assert rel(det._precision, ref._precision) < 1e-3
    for tail in ("_tail", "_ztail", "_vtail"):
        a, b = getattr(det, tail), getattr(ref, tail)
        assert rel(np.array([a.u90, a.u99]), np.array([b.u90, b.u99])) < 1e-3, tail
    for _ in range(200):
        x = rng.normal(size=5) @ mix * [1e-3, 1.0, 10.0, 1e4, 2.0] + 50.0 + rng.normal() * 3.0
        a, b = det.observe(x), ref.observe(x)
        assert abs(a - b) <= 2e-3 * abs(b)


@pytest.mark.parametrize("float32_ring", [False, True], ids=["layout 2", "layout 2, ring in float32"])
def test_a_snapshot_of_an_earlier_layout_resumes(float32_ring: bool) -> None:
    """Layout 2 kept the z² values and their window means in float32 arrays of their own (and, before
    the ring was halved, the deviations in float32 without scales): loaded, they join the ring, and the
    detector goes on with the same scores as one that never stopped (the values are the same)."""
    rng = np.random.default_rng(3)
    det = NoveltyDetector(AnomalyConfig(seasonal=False))
    for _ in range(1500):
        det.learn(det.observe(rng.normal(size=3) * [1.0, 1e-4, 1e5]))
    state = det.__getstate__()
    ring = half_ring.read(state["_calib"], state["_cscale"], len(state["_calib"]))
    state |= {"_v": 2, "_zcalib": ring[:, -2].copy(), "_vcalib": ring[:, -1].copy()}
    if float32_ring:
        state["_calib"] = ring[:, :-2].copy()
        del state["_cscale"]
    else:
        state["_calib"] = state["_calib"][:, :-2].copy()
        state["_cscale"] = state["_cscale"][:-2].copy()
    old = NoveltyDetector.__new__(NoveltyDetector)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old._calib.dtype == np.float16 and old._calib.shape == det._calib.shape
    assert np.array_equal(half_ring.read(old._calib, old._cscale, 1000), ring)
    for _ in range(500):
        x = rng.normal(size=3) * [1.0, 1e-4, 1e5]
        a, b = old.observe(x), det.observe(x)
        assert a == pytest.approx(b, rel=1e-12, nan_ok=True)
        old.learn(a)
        det.learn(b)
