import pickle

from flows.snapshots import from_snapshot, to_snapshot
from operators.ml.config import AnomalyConfig, FailureConfig, ForecastConfig, ModelConfig
from operators.ml.failure import FleetFailureModel
from operators.ml.twin_model import STATE_VERSION, TwinModel
from tests.unit.ml.synth import correlated_stream, readings

CFG = ModelConfig(
    anomaly=AnomalyConfig(warmup=100, window=5),
    forecast=ForecastConfig(horizon=5, window=50),
    failure=FailureConfig(rul_cap=100),
)


def trained_fleet() -> FleetFailureModel:
    fleet = FleetFailureModel(CFG.failure)
    for unit in range(3):
        m = TwinModel(CFG)
        data = correlated_stream(150 + 20 * unit, seed=10 + unit)
        for t, row in enumerate(data):
            m.update(t, readings(row))
        fleet.learn_history(m.on_event("failure", len(data) - 1))
    return fleet


def outputs(model: TwinModel, data, start: int, fleet: FleetFailureModel):
    return [model.update(start + t, readings(row), fleet=fleet) for t, row in enumerate(data)]


def test_recovered_model_scores_the_rest_identically():
    data = correlated_stream(600, seed=1)
    data[450:480, 0] += 12.0  # an anomaly after the restart point
    fleet = trained_fleet()
    uninterrupted = TwinModel(CFG)
    expected = outputs(uninterrupted, data, 0, fleet)

    first = TwinModel(CFG)
    outputs(first, data[:300], 0, fleet)
    snapshot = pickle.dumps(first)  # what Bytewax keeps in its recovery store
    del first
    recovered = pickle.loads(snapshot)
    rest = outputs(recovered, data[300:], 300, pickle.loads(pickle.dumps(fleet)))

    assert rest == expected[300:]
    assert any(o.score.is_anomaly for o in rest)
    assert all(o.forecasts and o.failure is not None for o in rest)


def test_state_carries_its_version_and_an_unknown_version_starts_afresh():
    m = TwinModel(CFG)
    for t, row in enumerate(correlated_stream(200, seed=2)):
        m.update(t, readings(row))
    state = m.__getstate__()
    assert state["_v"] == STATE_VERSION
    state["_v"] = STATE_VERSION + 99
    old = TwinModel.__new__(TwinModel)
    old.__setstate__(state)
    assert old.anomaly.n_learned == 0


def test_no_learning_while_in_maintenance_or_simulating():
    data = correlated_stream(400, seed=3)
    m = TwinModel(CFG)
    for t, row in enumerate(data[:200]):
        m.update(t, readings(row))
    before = (
        m.anomaly.n_learned,
        pickle.dumps((m.anomaly._baseline, m.anomaly._calib, m.anomaly._precision, m.anomaly._tail)),
        pickle.dumps(m.forecaster),
        len(m.history.rows),
    )
    for t, row in enumerate(data[200:] * 3):
        out = m.update(200 + t, readings(row), learn=False)
        assert not out.score.learned
    after = (
        m.anomaly.n_learned,
        pickle.dumps((m.anomaly._baseline, m.anomaly._calib, m.anomaly._precision, m.anomaly._tail)),
        pickle.dumps(m.forecaster),
        len(m.history.rows),
    )
    assert after == before


def test_failure_labels_history_and_repair_discards_it():
    m = TwinModel(CFG)
    for t in range(50):
        m.update(t, {"a": float(t)})
    labelled = m.on_event("failure", 49)
    assert [y for _, y in labelled][:2] == [49.0, 48.0] and labelled[-1][1] == 0.0
    assert m.history.rows == []
    for t in range(10):
        m.update(100 + t, {"a": float(t)})
    assert m.on_event("repair", 110) == [] and m.history.rows == []
    assert m.history.age == 0


def test_reset_forgets_learned_state():
    m = TwinModel(CFG)
    for t, row in enumerate(correlated_stream(150, seed=4)):
        m.update(t, readings(row))
    m.reset()
    assert m.anomaly.n_learned == 0 and m.forecaster.models == {} and m.history.rows == []


def _as_version_3(state: dict) -> dict:
    """A part's state dict as twinflow wrote it up to model layout 3: each packed row an array of its own."""
    packed, layout = state.pop("_packed"), state.pop("_rows")
    for part in layout.split():
        name, a, b = part.split(":")
        state[name] = packed[int(a)] if int(b) - int(a) == 1 else packed[int(a) : int(b)]
    return state


def test_states_pickle_packed_rows_as_one_array_and_read_the_older_layout():
    """The model states keep vectors as rows of one array (PackedRows) and have no ``__dict__``
    (slots). Since layout 4 they pickle that array once, with its row layout (a snapshot is taken
    of every active twin in every epoch); snapshots of layout 3, one array per row, still resume
    with what they learned."""
    m = TwinModel(CFG)
    for t, row in enumerate(correlated_stream(500, seed=5)):
        m.update(t, readings(row))
    cond, health = m.condition.__getstate__(), m.sensor_health.__getstate__()
    assert cond["_packed"].shape == (19, 4) and "_cusum:15:19" in cond["_rows"] and "_cusum" not in cond
    assert health["_packed"].shape == (14, 4) and "_ref_longest:13:14" in health["_rows"] and "_run" not in health
    assert not hasattr(m.anomaly, "__dict__") and not hasattr(m.condition, "__dict__")
    data = correlated_stream(100, seed=6)
    back = from_snapshot(to_snapshot(m))  # the flows' snapshots
    older = m.__getstate__()
    older.update(_v=3, condition=type(m.condition).__new__(type(m.condition)),
                 sensor_health=type(m.sensor_health).__new__(type(m.sensor_health)))  # fmt: skip
    older["condition"].__setstate__(_as_version_3(cond))
    older["sensor_health"].__setstate__(_as_version_3(health))
    resumed = TwinModel.__new__(TwinModel)
    resumed.__setstate__(pickle.loads(pickle.dumps(older)))
    assert resumed.anomaly.n_learned == m.anomaly.n_learned > 0
    expected = [m.update(500 + t, readings(r)) for t, r in enumerate(data)]
    assert [back.update(500 + t, readings(r)) for t, r in enumerate(data)] == expected
    assert [resumed.update(500 + t, readings(r)) for t, r in enumerate(data)] == expected


def test_resumed_twins_share_their_settings():
    """Every twin's state carries its settings; resumed from snapshots, twins with equal settings
    share one instance of each (not a copy per twin)."""
    twins = []
    for seed in (7, 8):
        m = TwinModel(CFG)
        for t, row in enumerate(correlated_stream(450, seed=seed)):
            m.update(t, readings(row))
        twins.append(pickle.loads(pickle.dumps(m)))
    a, b = twins
    assert a.config is b.config and a.config == CFG
    assert a.anomaly.config is b.anomaly.config and a.condition.config is b.condition.config
    assert a.sensor_health.config is b.sensor_health.config and a.forecaster.config is b.forecaster.config
    assert a.operating_point.config is b.operating_point.config
