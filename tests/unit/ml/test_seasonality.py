"""Daily seasonality: the novelty detector subtracts a learned time-of-day profile once it explains
the data — a level shift smaller than the daily swing is seen, the daily peaks are not flagged."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from operators.ml.config import AnomalyConfig, ModelConfig
from operators.ml.twin_model import TwinModel

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def daily(n: int, shift_at: int | None = None, seed: int = 0) -> list[float]:
    """Five-minute samples: a daily swing of ±10 around 50, noise σ 1, optionally +4 (4 σ) from ``shift_at``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        x = 50 + 10 * math.sin(2 * math.pi * k / 288) + rng.normal(0, 1)
        if shift_at is not None and k >= shift_at:
            x += 4.0
        out.append(x)
    return out


DEFAULT = ModelConfig()


def scores(values: list[float], cfg: ModelConfig = DEFAULT):
    m = TwinModel(cfg)
    out = [m.update(T0 + timedelta(minutes=5 * k), {"load": v}).score for k, v in enumerate(values)]
    return m, out


def test_daily_peaks_are_not_anomalies_and_the_profile_switches_on():
    m, out = scores(daily(3000))
    assert m.anomaly._season is not None and m.anomaly._season.active
    assert not any(s.is_anomaly for s in out)


def test_a_shift_smaller_than_the_daily_swing_is_caught_with_the_profile_only():
    values = daily(3000, shift_at=2000, seed=1)
    _, out = scores(values)
    first = next((k for k, s in enumerate(out) if s.is_anomaly), None)
    assert first is not None and 2000 <= first < 2030
    off = ModelConfig(anomaly=AnomalyConfig(seasonal=False))
    _, plain = scores(values, off)
    late = next((k for k, s in enumerate(plain) if s.is_anomaly and k >= 2000), None)
    assert late is None or late > first + 30  # without the profile: missed, or seen much later


def test_fast_data_of_a_few_hours_never_uses_a_daily_profile():
    m = TwinModel(ModelConfig())
    rng = np.random.default_rng(2)
    for k in range(5000):  # 1 Hz for 1.4 h
        m.update(T0 + timedelta(seconds=k), {"a": float(rng.normal()), "b": float(rng.normal())})
    assert m.anomaly._season is not None and not m.anomaly._season.active
