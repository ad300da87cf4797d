"""Issue 12 acceptance: each detector of a twin's model on synthetic signals made for it.

Slow ramp (condition monitor), frozen sensor (sensor health), a drifting transmitter against its
neighbours (relations), a lasting level shift (one episode, then re-learned), bounded scores.
All through :class:`operators.ml.twin_model.TwinModel`, the unit of the live step and of replay.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from operators.ml.config import AnomalyConfig, ConditionConfig, ModelConfig, SensorHealthConfig
from operators.ml.twin_model import TwinModel

# one sample a second (numeric times are seconds with time_unit_s = 1)
CFG = ModelConfig(time_unit_s=1.0)


def noisy(n: int, d: int = 4, seed: int = 0, level: float = 10.0) -> np.ndarray:
    """``n`` samples of ``d`` independent noisy sensors around ``level`` (AR(1) noise, σ ≈ 0.1)."""
    rng = np.random.default_rng(seed)
    z = np.zeros((n, d))
    for t in range(1, n):
        z[t] = 0.5 * z[t - 1] + rng.normal(0, 0.1, d)
    return level + z


def run(model: TwinModel, data: np.ndarray, names: list[str] | None = None, start: int = 0):
    names = names or [f"s{i}" for i in range(data.shape[1])]
    return [model.update(start + t, dict(zip(names, map(float, row), strict=True))).score for t, row in enumerate(data)]


def episodes(scores) -> list[tuple[int, int]]:
    out, begin = [], None
    for i, s in enumerate(scores):
        if s.is_anomaly and begin is None:
            begin = i
        elif not s.is_anomaly and begin is not None:
            out.append((begin, i - 1))
            begin = None
    return out + ([(begin, len(scores) - 1)] if begin is not None else [])


def test_slow_ramp_is_seen_by_the_condition_monitor_and_named_in_the_health():
    data = noisy(6000)
    ramp = np.clip((np.arange(6000) - 2000) / 4000, 0, None)
    data[:, 2] += 2.0 * ramp**2  # slow wear: +2 (20 noise σ) over 4000 samples, quadratic
    scores = run(TwinModel(CFG), data)
    assert all(s.health is None for s in scores[:300])  # the reference is still being learned
    assert all(s.health > 0.9 for s in scores[500:2000])  # healthy before the ramp
    starts = [b for b, _ in episodes(scores)]
    assert starts and all(b >= 2000 for b in starts)  # no false alarm before the ramp
    assert min(starts) < 4500  # seen well before the ramp's end
    late = scores[-1]
    assert late.health < 0.5 and next(iter(late.drivers)) == "s2"  # the deviation stays visible
    assert late.kind in ("condition", "novelty")


def test_frozen_sensor_is_a_sensor_fault_named_and_masked():
    data = noisy(3000, seed=1)
    data[2000:2600, 1] = data[1999, 1]  # the transmitter stops updating
    scores = run(TwinModel(CFG), data)
    faulty = [i for i, s in enumerate(scores) if s.sensor_faults.get("s1") == "frozen"]
    assert faulty and 2000 + 30 <= faulty[0] <= 2000 + 30 + 2 * CFG.condition.block
    assert all(s.sensor_faults == {"s1": "frozen"} for s in scores[faulty[0] : 2600])
    assert not any(s.sensor_faults for s in scores[2620:])  # it reports again: no fault
    starts = [b for b, _ in episodes(scores)]
    assert any(faulty[0] <= b <= faulty[0] + CFG.condition.block for b in starts)  # news of the fault
    assert scores[faulty[0] + 1].kind == "sensor_fault"
    assert not any(s.is_anomaly for s in scores[faulty[0] + 50 : 2600])  # masked: no lasting alarm


def test_a_constant_reading_is_not_a_frozen_sensor():
    data = noisy(2000, seed=2)
    data[:, 3] = 5.0  # a setpoint or status that never changes
    scores = run(TwinModel(CFG), data)
    assert not any(s.sensor_faults for s in scores)


def test_drifting_transmitter_breaks_its_relation_with_its_neighbours():
    # Three transmitters follow a common load that wanders widely (each alone moves far more than
    # the drift); after t = 3000 transmitter b drifts slowly away from what the others say.
    rng = np.random.default_rng(3)
    n = 7000
    load = np.cumsum(rng.normal(0, 0.05, n))
    load = 5.0 * np.sin(np.arange(n) / 400.0) + 0.2 * load
    data = np.column_stack([10 + load, 20 + 2 * load, 30 - load]) + rng.normal(0, 0.05, (n, 3))
    drift = np.clip((np.arange(n) - 3000) / 3000, 0, None)
    data[:, 1] += 1.5 * drift
    model = TwinModel(ModelConfig(time_unit_s=1.0, condition=ConditionConfig(reference=1500)))
    scores = run(model, data, ["a", "b", "c"])
    relation = [i for i, s in enumerate(scores) if s.kind == "relation" and s.is_anomaly]
    assert relation and min(relation) > 3000
    named = {max(scores[i].contributions, key=scores[i].contributions.get) for i in relation}
    assert named == {"b"}
    assert "b" in scores[-1].drivers


def test_lasting_level_shift_is_one_episode_and_stays_visible_in_the_health():
    data = noisy(5000, seed=4)
    data[2500:, 0] += 3.0  # 30 σ, and it stays
    scores = run(TwinModel(CFG), data)
    eps = episodes(scores)
    assert len(eps) == 1 and 2500 <= eps[0][0] < 2510
    assert eps[0][1] - eps[0][0] <= CFG.anomaly.relearn_s + 20  # novelty re-learns after relearn_s
    assert scores[eps[0][0] + 40].anomaly_score < scores[eps[0][0] + 5].anomaly_score  # news once
    assert all(s.health < 0.5 and s.kind == "condition" for s in scores[eps[0][1] + 1 :])


def test_scores_are_bounded_with_the_threshold_in_the_same_units():
    data = noisy(3000, seed=5)
    data[2000:2050, 1] += 1e6  # absurd values: still a score in [0, 1)
    scores = run(TwinModel(CFG), data)
    values = [s.anomaly_score for s in scores if not math.isnan(s.anomaly_score)]
    assert values and all(0.0 <= v < 1.0 for v in values)
    assert all(s.anomaly_score >= CFG.anomaly.threshold for s in scores[2000:2002])


def test_repeated_spikes_are_a_sensor_fault_and_a_physical_range_too():
    data = noisy(3000, seed=6)
    for t in range(2000, 2300, 40):
        data[t, 2] += 5.0  # single-sample spikes, straight back
    data[2700:2720, 3] = -400.0  # outside the physical range configured below
    model = TwinModel(CFG, ranges={"s3": (-50.0, 150.0)})
    scores = run(model, data)
    assert any(s.sensor_faults.get("s2") == "spikes" for s in scores[2000:2350])
    assert any(s.sensor_faults.get("s3") == "out_of_range" for s in scores[2700:2730])


def test_rebaseline_learns_the_reference_again():
    data = noisy(5000, seed=7)
    data[2000:, 1] += 3.0  # a new part: a new normal
    model = TwinModel(CFG)
    run(model, data[:3000])
    assert model.condition is not None and model.condition.health < 0.5
    assert model.rebaseline("s1")
    assert not model.rebaseline("no-such-sensor")
    scores = run(model, data[3000:], start=3000)
    assert scores[-1].health > 0.9 and not scores[-1].drivers


def test_without_the_slow_time_scale_the_ramp_is_missed():
    """The same ramp as above with the condition monitor off: the novelty alone learns it (the
    reason the condition monitor exists; measured, not assumed)."""
    data = noisy(6000)
    ramp = np.clip((np.arange(6000) - 2000) / 4000, 0, None)
    data[:, 2] += 2.0 * ramp**2
    off = ModelConfig(
        time_unit_s=1.0,
        condition=ConditionConfig(enabled=False),
        sensor_health=SensorHealthConfig(enabled=False),
        anomaly=AnomalyConfig(),
    )
    scores = run(TwinModel(off), data)
    assert all(s.health is None for s in scores)
    assert not episodes(scores) or min(b for b, _ in episodes(scores)) > 4500


@pytest.mark.parametrize("kind", ["frozen", "spikes"])
def test_sensor_faults_need_the_reference_first(kind):
    data = noisy(250, seed=8)  # shorter than the reference: nothing is judged yet
    if kind == "frozen":
        data[50:, 0] = data[49, 0]
    else:
        data[100:200:10, 0] += 5.0
    scores = run(TwinModel(CFG), data)
    assert not any(s.sensor_faults for s in scores)
