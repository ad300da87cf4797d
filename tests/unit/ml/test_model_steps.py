import pickle

from operators.failure import FailurePrediction
from operators.ml_config import AnomalyConfig, FailureConfig, ModelConfig
from operators.model_control import ControlRecord
from operators.model_steps import FleetItem, FleetPrediction, FleetStep, Reading, TwinEvent, TwinStep
from operators.twin_model import TwinOutput

CFG = ModelConfig(anomaly=AnomalyConfig(warmup=20, window=3), failure=FailureConfig(rul_cap=50))


def run_life(step: TwinStep, state, twin: str, life: int, start: int = 0):
    outs = []
    for t in range(start, start + life):
        state, out = step(state, Reading(twin, t, {"wear": (t - start) / life, "x": 1.0}))
        outs += out
    return state, outs


def test_twin_and_fleet_steps_learn_from_failures_and_predict():
    twin_step, fleet_step = TwinStep(CFG, predict_every=10), FleetStep(CFG.failure)
    fleet = None
    for unit in range(4):
        state, outs = run_life(twin_step, None, f"u{unit}", 80 + 10 * unit)
        assert sum(isinstance(o, TwinOutput) for o in outs) == 80 + 10 * unit
        assert sum(isinstance(o, FleetItem) for o in outs) == (80 + 10 * unit) // 10
        state, items = twin_step(state, TwinEvent(f"u{unit}", "failure", 80 + 10 * unit - 1))
        assert len(items) == 1 and items[0].labelled and items[0].twin_id == f"u{unit}"
        fleet, none = fleet_step(fleet, items[0])
        assert none == []
    fleet = pickle.loads(pickle.dumps(fleet))
    state, outs = run_life(twin_step, None, "new", 60)
    preds = []
    for item in (o for o in outs if isinstance(o, FleetItem)):
        fleet, got = fleet_step(fleet, item)
        preds += got
    assert preds and all(isinstance(p, FleetPrediction) and p.twin_id == "new" for p in preds)
    assert all(isinstance(p.prediction, FailurePrediction) for p in preds)
    assert preds[-1].prediction.rul < preds[0].prediction.rul


def test_maintenance_status_scores_without_learning_and_reset_forgets():
    step = TwinStep(CFG)
    state, _ = run_life(step, None, "p1", 40)
    learned = state.anomaly.n_learned
    state, out = step(state, Reading("p1", 40, {"wear": 9.0, "x": 1.0}, status="maintenance"))
    assert isinstance(out[0], TwinOutput) and not out[0].score.learned
    assert state.anomaly.n_learned == learned
    state, out = step(state, ControlRecord(twin_id="p1", action="reset", requested_at="2026-01-01T00:00:00Z"))
    assert out == [] and state.anomaly.n_learned == 0 and state.history.age == 0
