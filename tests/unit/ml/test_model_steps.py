"""The live per-twin step (operators.ml.live_step.step) and the fleet step it feeds (model_steps.FleetStep).

These were the tests of ``model_steps.TwinStep``, a second assembly of the twin's models that only
tests used; they now run the step the models flow and ``twinflow replay`` run."""

import pickle

from operators.ml.config import AnomalyConfig, FailureConfig, ModelConfig
from operators.ml.failure import RulEstimate
from operators.ml.fleet_step import FleetItem, FleetPrediction, FleetStep
from operators.ml.live_state import LiveModelConfig
from operators.ml.live_step import Event, Reading, Reset, Status, step
from operators.records.alerts import AnomalyScore

MODEL = ModelConfig(anomaly=AnomalyConfig(warmup=20, window=3), failure=FailureConfig(rul_cap=50))
CFG = LiveModelConfig(MODEL, forecast_every=0, predict_every=10)


def run_life(state, twin: str, life: int, start: int = 0, cfg: LiveModelConfig = CFG):
    outs = []
    for t in range(start, start + life):
        # (wear with some noise: a sensor that only rises is a counter, scored as its rate)
        state, out = step(state, Reading(t, {"wear": (t - start) / life + 0.05 * (t % 2), "x": 1.0}), cfg, twin)
        outs += out
    return state, outs


def test_twin_and_fleet_steps_learn_from_failures_and_predict():
    fleet_step = FleetStep(MODEL.failure)
    fleet = None
    for unit in range(4):
        life = 80 + 10 * unit
        state, outs = run_life(None, f"u{unit}", life)
        assert sum(isinstance(o, AnomalyScore) for o in outs) > 0  # scored once warmed up
        assert sum(isinstance(o, FleetItem) and o.features is not None for o in outs) == life // 10
        state, items = step(state, Event("failure", life - 1), CFG, f"u{unit}")
        assert len(items) == 1 and items[0].labelled and items[0].twin_id == f"u{unit}"
        fleet, none = fleet_step(fleet, items[0])
        assert none == []
    fleet = pickle.loads(pickle.dumps(fleet))
    state, outs = run_life(None, "new", 60)
    preds = []
    for item in (o for o in outs if isinstance(o, FleetItem)):
        fleet, got = fleet_step(fleet, item)
        preds += got
    assert preds and all(isinstance(p, FleetPrediction) and p.twin_id == "new" for p in preds)
    assert all(isinstance(p.prediction, RulEstimate) for p in preds)
    assert preds[-1].prediction.rul < preds[0].prediction.rul


def test_maintenance_status_scores_without_learning_and_reset_forgets():
    state, _ = run_life(None, "p1", 40)
    learned = state.model.anomaly.n_learned
    state, _ = step(state, Status(maintenance=True), CFG, "p1")
    state, out = step(state, Reading(40, {"wear": 9.0, "x": 1.0}), CFG, "p1")
    assert any(isinstance(o, AnomalyScore) for o in out)  # still scored
    assert state.model.anomaly.n_learned == learned
    state, out = step(state, Reset("ops"), CFG, "p1")
    assert out == [] and state.model.anomaly.n_learned == 0 and state.model.history.age == 0
