import math
import pickle

import numpy as np
import pytest

from operators.ml.config import AnomalyConfig, ConditionConfig, ModelConfig, SensorHealthConfig
from operators.ml.twin_model import TwinModel
from tests.unit.ml.synth import correlated_stream, readings

CFG = AnomalyConfig(warmup=200, window=5)


def novelty(cfg: AnomalyConfig) -> TwinModel:
    """The novelty detector under the twin's one alarm (the only thresholding): condition and sensor
    health off, times in seconds."""
    off = ConditionConfig(enabled=False), SensorHealthConfig(enabled=False)
    return TwinModel(ModelConfig(cfg, time_unit_s=1.0, condition=off[0], sensor_health=off[1]))


def run(m: TwinModel, data: np.ndarray, start: int = 0, learn: bool = True):
    return [m.update(start + t, readings(row), learn=learn).score for t, row in enumerate(data)]


def test_step_fault_is_flagged_and_explained_by_the_faulty_sensor():
    data = correlated_stream(1500, seed=1)
    data[1000:1100, 2] += 8.0  # a sustained fault on sensor s2
    scores = run(novelty(CFG), data)
    normal = [s.is_anomaly for s in scores[CFG.warmup : 1000]]
    assert sum(normal) / len(normal) < 0.05  # few false alarms on normal data
    fault = scores[1000:1100]
    assert sum(s.is_anomaly for s in fault) > 80
    flagged = [s for s in fault if s.is_anomaly]
    assert all(max(s.contributions, key=s.contributions.get) == "s2" for s in flagged)
    assert all(math.isclose(sum(s.contributions.values()), 1.0, rel_tol=1e-6) for s in flagged)


def test_single_sample_blip_does_not_raise_with_enter_after():
    data = correlated_stream(600, seed=2)
    data[500, 0] += 40.0
    eager = run(novelty(AnomalyConfig(warmup=200, window=1)), data)
    assert eager[500].anomaly_score > 0.5 and eager[500].is_anomaly  # the blip is scored high …
    scores = run(novelty(AnomalyConfig(warmup=200, window=1, enter_after=3)), data)
    assert not any(s.is_anomaly for s in scores[500:503])  # … but needs 3 in a row to raise an alarm


def test_exit_after_bridges_a_short_dip_within_an_alarm():
    data = correlated_stream(700, seed=2)
    data[500:540, 0] += 40.0
    data[520:523, 0] -= 40.0  # a 3-sample dip back to normal inside the fault
    cfg = AnomalyConfig(warmup=200, window=1)
    eager = run(novelty(cfg), data)
    assert eager[510].is_anomaly and not all(s.is_anomaly for s in eager[500:540])  # the dip ends the alarm …
    held = run(novelty(AnomalyConfig(warmup=200, window=1, exit_after=10)), data)
    assert all(s.is_anomaly for s in held[500:540])  # … unless it must last exit_after samples
    assert not any(s.is_anomaly for s in held[560:])  # and the alarm still ends after the fault


def test_warmup_is_never_flagged_and_has_no_score():
    data = correlated_stream(300, seed=3)
    data[50:60] += 50.0
    scores = run(novelty(CFG), data)
    assert all(s.warming_up and not s.is_anomaly and math.isnan(s.anomaly_score) for s in scores[:150])


def test_flagged_points_are_not_learned():
    data = correlated_stream(800, seed=4)
    data[600:700, 1] += 10.0
    det = novelty(CFG)
    scores = run(det, data[:700])
    flagged = sum(s.is_anomaly for s in scores)
    assert flagged > 50
    assert det.anomaly.n_learned == 700 - flagged
    assert all(not s.learned for s in scores if s.is_anomaly)


def test_lasting_regime_change_is_one_episode_then_relearned():
    data = correlated_stream(1200, seed=5)
    data[500:, 0] += 15.0
    det = novelty(AnomalyConfig(warmup=200, window=5, relearn_s=100))  # times are seconds here
    scores = run(det, data)
    flags = [s.is_anomaly for s in scores]
    starts = [i for i in range(1, len(flags)) if flags[i] and not flags[i - 1]]
    assert starts and 500 <= starts[0] < 510 and len(starts) == 1  # one episode for a lasting change
    assert any(s.drift for s in scores[595:620])  # re-learned after relearn_s
    assert not any(flags[650:])  # the new level became normal
    assert all(0.0 <= s.anomaly_score < 1.0 for s in scores[200:])  # bounded
    assert det.anomaly._recent is None  # the alarm's held samples are not kept once learned (memory)


def test_no_learning_while_in_maintenance():
    data = correlated_stream(700, seed=6)
    det = novelty(CFG)
    run(det, data[:400])
    learned = {k: pickle.dumps(getattr(det.anomaly, k)) for k in ("_baseline", "_calib", "_precision", "_tail", "_var")}
    n = det.anomaly.n_learned
    maint = data[400:700] + 30.0  # wildly different readings during maintenance
    scores = run(det, maint, start=400, learn=False)
    assert det.anomaly.n_learned == n
    assert all(not s.learned for s in scores)
    assert {k: pickle.dumps(getattr(det.anomaly, k)) for k in learned} == learned


def test_reset_forgets_everything():
    det = novelty(CFG)
    run(det, correlated_stream(300, seed=7))
    det.reset()
    assert det.anomaly.n_learned == 0 and det.anomaly.sensors == []
    assert det.update(0, {"a": 1.0}).score.warming_up


def test_missing_sensor_carries_last_value_and_new_sensor_is_ignored():
    det = novelty(CFG)
    det.update(0, {"a": 1.0, "b": 2.0})
    s = det.update(1, {"a": 1.0, "c": 5.0}).score
    assert det.anomaly.sensors == ["a", "b"] and s.warming_up


def test_config_rejects_out_of_range_values():
    with pytest.raises(ValueError, match=r"AnomalyConfig.shrinkage=2"):
        AnomalyConfig(shrinkage=2)
