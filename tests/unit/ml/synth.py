"""Small synthetic telemetry for the ML tests (no shared data needed)."""

from __future__ import annotations

import numpy as np


def correlated_stream(n: int, d: int = 4, seed: int = 0) -> np.ndarray:
    """``n`` samples of ``d`` correlated, slowly wandering sensors (AR(1) noise around a mix)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    z = np.zeros((n, d))
    for t in range(1, n):
        z[t] = 0.6 * z[t - 1] + rng.normal(size=d)
    drift = np.linspace(0, 0.5, n)[:, None]
    return z @ mix.T + 10.0 + drift


def readings(row: np.ndarray) -> dict[str, float]:
    return {f"s{i}": float(v) for i, v in enumerate(row)}
