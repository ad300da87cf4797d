"""Frozen sensors against the sensor's own longest still stretch in the reference.

A regulated value read through an integer register (a compressor's speed at its setpoint, polled
over Modbus) holds still in stretches and flickers by one count in bursts: its share of unchanged
steps says little about how long it may hold still. Found in `make demo` (compressor-003's
``speed_rpm``, 2950 ± 1 rpm: a stretch of 60 unchanged samples called frozen after a 150-sample
reference whose longest was 21).
"""

from __future__ import annotations

import numpy as np
import pytest

from operators.ml.config import SensorHealthConfig
from operators.ml.sensor_health import SensorHealth

BLOCK, REFERENCE = 10, 400


def regulated(n: int, seed: int = 0) -> np.ndarray:
    """2950 rpm read as an integer: still for 10–40 samples, then a burst of one-count flicker."""
    rng = np.random.default_rng(seed)
    out: list[float] = []
    while len(out) < n:
        out += [2950.0] * int(rng.integers(10, 41))
        out += [2950.0 + (i % 2) for i in range(1, int(rng.integers(4, 12)))]
    return np.array(out[:n])


def health(config: SensorHealthConfig, still: int) -> SensorHealth:
    """A sensor health after a reference of regulated values, then ``still`` unchanged samples (and a
    noisy neighbour all along)."""
    rng = np.random.default_rng(1)
    sh = SensorHealth(["speed", "temp"], config, block=BLOCK, reference=REFERENCE)
    speed = np.concatenate([regulated(REFERENCE + 2), np.full(still, 2950.0)])
    for value in speed:
        sh.push(np.array([value, 60.0 + rng.normal()]), learn=True)
    return sh


@pytest.mark.parametrize("still", [60, 100])
def test_a_regulated_value_holding_still_longer_than_its_repeat_rate_allows_is_not_frozen(still):
    old_rule = health(SensorHealthConfig(frozen_run_factor=0.0), still)  # the repeat rate alone
    assert old_rule.faults == {"speed": "frozen"}  # what the demo saw
    assert health(SensorHealthConfig(), still).faults == {}


def test_a_regulated_value_stuck_for_three_times_its_longest_stretch_is_frozen():
    sh = health(SensorHealthConfig(), 0)
    longest = int(sh._ref_longest[0])
    assert 35 <= longest <= 40  # the reference's longest still stretch (10–40 by construction)
    assert health(SensorHealthConfig(), 3 * longest - 2 * BLOCK).faults == {}
    assert health(SensorHealthConfig(), 3 * longest + 2 * BLOCK).faults == {"speed": "frozen"}


def test_a_noisy_sensor_is_frozen_as_soon_as_before():
    """Noise changes at nearly every step: its longest still stretch is short, frozen_samples decides."""
    rng = np.random.default_rng(2)
    sh = SensorHealth(["a"], SensorHealthConfig(), block=BLOCK, reference=REFERENCE)
    for t in range(REFERENCE + 2 + 60):
        sh.push(np.array([rng.normal() if t < REFERENCE + 2 else 1.25]), learn=True)
    assert sh._need[0] == SensorHealthConfig().frozen_samples
    assert sh.faults == {"a": "frozen"}


def test_a_snapshot_from_before_the_longest_stretch_resumes_with_its_thresholds():
    """A sensor health pickled without the row (an earlier twinflow) resumes: the thresholds it had
    decided stay, the longest stretch reads 0 (it only matters while a reference is learned)."""
    sh = health(SensorHealthConfig(frozen_run_factor=0.0), 0)
    state = sh.__getstate__()
    rows = state["_rows"].split()
    assert rows[-1] == "_ref_longest:13:14"
    state["_rows"], state["_packed"] = " ".join(rows[:-1]), state["_packed"][:13]  # the earlier layout
    back = SensorHealth.__new__(SensorHealth)
    back.__setstate__(state)
    assert back._need.tolist() == sh._need.tolist() and back._ref_longest.tolist() == [0.0, 0.0]
