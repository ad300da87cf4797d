"""Live failure prediction in the models flow's operators: twin step → fleet step → FailurePrediction."""

import math
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from operators.ml.config import AnomalyConfig, FailureConfig, ModelConfig
from operators.ml.fleet_step import FleetItem
from operators.ml.live_state import LiveModelConfig, fleet_of
from operators.ml.live_step import Event, Reading, Reset, Status, fleet_step, step
from operators.records import twin_events
from operators.records.alerts import FailurePrediction, decode, encode
from operators.records.envelope import Rejected

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CFG = LiveModelConfig(
    ModelConfig(
        anomaly=AnomalyConfig(warmup=20, window=3), failure=FailureConfig(rul_cap=50, horizon=10), time_unit_s=1
    ),
    forecast_every=0,
    predict_every=10,
)


def at(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def live(state, twin: str, start: int, n: int, life: int, cfg: LiveModelConfig = CFG):
    """``n`` readings of a machine wearing out over ``life`` samples, from sample ``start`` of its life."""
    outs = []
    for i in range(start, start + n):
        state, out = step(state, Reading(at(i), {"wear": i / life + 0.01 * math.sin(i), "x": 1.0}), cfg, twin)
        outs += out
    return state, outs


def fleet_items(outs) -> list[FleetItem]:
    return [o for o in outs if isinstance(o, FleetItem)]


def trained_fleet(units: int = 4):
    fleet = None
    for u in range(units):
        life = 80 + 10 * u
        state, _ = live(None, f"u{u}", 0, life, life)
        state, out = step(state, Event("failure", at(life - 1)), CFG, f"u{u}")
        assert len(out) == 1 and out[0].labelled and out[0].twin_id == f"u{u}" and out[0].fleet == "fleet"
        fleet, preds = fleet_step(fleet, out[0], CFG)
        assert preds == []
    return fleet


def test_failure_labels_history_and_the_fleet_predicts_for_other_twins():
    state, outs = live(None, "a", 0, 60, 60)
    items = fleet_items(outs)
    assert [i.features is not None for i in items] == [True] * 6  # one request per 10 samples
    fleet = None
    for item in items:  # nothing learned yet: no predictions
        fleet, preds = fleet_step(fleet, item, CFG)
        assert preds == []
    state, out = step(state, Event("failure", at(59)), CFG, "a")
    labels = [y for _, y in out[0].labelled]
    assert labels[0] == 50.0 and labels[-1] == 0.0 and len(labels) == 60  # RUL = min(cap, T − t)
    assert state.model.history.age == 0 and state.model.history.rows == []  # a new life starts

    fleet = trained_fleet()
    _, outs = live(None, "other", 0, 70, 80)
    preds = []
    for item in fleet_items(outs):
        fleet, got = fleet_step(fleet, item, CFG)
        preds += got
    assert len(preds) == 7 and all(isinstance(p, FailurePrediction) and p.twin_id == "other" for p in preds)
    assert preds[-1].rul_s < preds[0].rul_s  # wearing out
    for p in preds:
        assert p.rul_low_s <= p.rul_s <= p.rul_high_s and 0.0 <= p.failure_probability <= 1.0
        assert p.horizon_s == 10.0 and p.uncertainty > 0 and p.model_version == 4 and p.model.endswith(":fleet")
    assert decode(FailurePrediction, encode(preds[-1])) == preds[-1]


def test_repair_starts_a_new_life_without_a_label():
    state, _ = live(None, "r", 0, 30, 100)
    state, out = step(state, Event("repair", at(30)), CFG, "r")
    assert out == [] and state.model.history.age == 0 and state.model.history.rows == []
    state, out = step(state, Event("failure", at(31)), CFG, "r")
    assert out == []  # nothing kept since the repair: nothing to learn


def test_no_learning_in_maintenance_but_predictions_continue():
    fleet = trained_fleet(2)
    state, _ = live(None, "m", 0, 20, 100)
    kept, learned = len(state.model.history.rows), state.model.anomaly.n_learned
    state, _ = step(state, Status(maintenance=True), CFG, "m")
    state, outs = live(state, "m", 20, 20, 100)
    assert len(state.model.history.rows) == kept and state.model.anomaly.n_learned == learned
    preds = []
    for item in fleet_items(outs):
        fleet, got = fleet_step(fleet, item, CFG)
        preds += got
    assert len(preds) == 2
    state, _ = step(state, Status(maintenance=False), CFG, "m")
    state, _ = live(state, "m", 40, 5, 100)
    assert len(state.model.history.rows) == kept + 5
    _, out = step(state, Event("failure", at(60)), CFG, "m")
    assert len(out[0].labelled) == kept + 5  # maintenance samples are not part of the label


def test_model_reset_forgets_the_failure_history():
    state, _ = live(None, "z", 0, 30, 100)
    state, out = step(state, Reset("ops"), CFG, "z")
    assert out == [] and state.model.history.age == 0 and state.model.history.rows == []
    _, out = step(state, Event("failure", at(40)), CFG, "z")
    assert out == []


def test_states_round_trip_through_pickle():
    fleet = trained_fleet(3)
    state, _ = live(None, "p", 0, 45, 90)
    state2, fleet2 = pickle.loads(pickle.dumps(state)), pickle.loads(pickle.dumps(fleet))
    _, outs = live(state, "p", 45, 20, 90)
    _, outs2 = live(state2, "p", 45, 20, 90)
    assert fleet_items(outs) == fleet_items(outs2) and fleet_items(outs)
    preds = [fleet_step(fleet, i, CFG)[1] for i in fleet_items(outs)]
    preds2 = [fleet_step(fleet2, i, CFG)[1] for i in fleet_items(outs2)]
    assert preds == preds2 and all(preds)


def test_failure_prediction_off_sends_nothing_to_a_fleet():
    off = LiveModelConfig(ModelConfig(anomaly=AnomalyConfig(warmup=20, window=3)), forecast_every=0, predict_every=10)
    state, outs = live(None, "n", 0, 40, 100, off)
    assert fleet_items(outs) == [] and state.model.history is None
    assert step(state, Event("failure", at(40)), off, "n")[1] == []
    state, outs = live(state, "n", 40, 20, 100)  # switched on (e.g. after a restart with ml.model = "rul")
    assert state.model.history is not None and len(fleet_items(outs)) == 2


def test_fleets_by_twin_id_glob():
    cfg = LiveModelConfig(fleets=(("pumps", "pump-*"), ("fans", "fan-*")), default_fleet="rest")
    assert [fleet_of(t, cfg) for t in ("pump-1", "fan-2", "valve-3")] == ["pumps", "fans", "rest"]
    _, out = live(
        None, "pump-1", 0, 10, 100, LiveModelConfig(CFG.model, forecast_every=0, predict_every=10, fleets=cfg.fleets)
    )
    assert fleet_items(out)[0].fleet == "pumps"


def test_event_records_decode_or_are_rejected():
    ev = twin_events.TwinEvent("pump-1", "repair", at(0), note="bearing replaced", author="ops")
    assert twin_events.decode(twin_events.encode(ev)) == ev
    for bad, reason in [
        (b"{", "bad_json"),
        (b'{"twin_id": "p", "kind": "failure"}', "schema"),
        (b'{"twin_id": "p", "kind": "failure", "time": "2026-11-01T00:00:00"}', "schema"),  # no time zone
        (b'{"twin_id": "p", "kind": "failure", "time": "2026-11-01T00:00:00Z", "extra": 1}', "schema"),
        (None, "schema"),
    ]:
        with pytest.raises(Rejected) as exc:
            twin_events.decode(bad)
        assert exc.value.reason.value == reason


def test_bad_quality_envelopes_are_not_scored():
    """A failed sensor or an OPC-UA node still waiting for data: stored, never scored or learned."""
    from operators.ml.live_step import reading_of
    from operators.records.envelope import decode

    def env(quality: str):
        body = b'{"v":1,"twin_id":"p1","ts":"2026-11-25T08:00:00Z","seq":1,"source":"opcua",'
        return decode(body + b'"readings":{"temp_c":0.0},"quality":"' + quality.encode() + b'"}')

    assert reading_of(env("bad")) is None
    assert reading_of(env("uncertain")).readings == {"temp_c": 0.0}
    assert reading_of(env("good")).readings == {"temp_c": 0.0}
