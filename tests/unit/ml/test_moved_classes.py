"""Snapshots pickled before the live step and the forecaster were split into modules resume
(flows.snapshots.MOVED_CLASSES): the classes are found at their new place, on the same numbers."""

import pickle
from array import array

from flows.snapshots import from_snapshot, to_snapshot
from operators.ml.config import ForecastConfig
from operators.ml.forecast import ERRORS_SEEN, LEVEL, PENDING, SEEN, TREND, SensorForecasts, _SensorModel, error_ring
from operators.ml.holt import Holt
from operators.ml.live_state import TwinModelState
from operators.ml.live_step import step_many
from operators.ml.quantiles import WindowQuantile
from tests.unit.ml.test_step_many import CFG, EarlierLayout, forecaster_samples, items


def at_old_place(obj: object, *moves: tuple[str, str, str]) -> bytes:
    """``obj`` pickled as a version before the split wrote it: each ``(name, new module, old
    module)`` global names its old module. (Protocol 2 names globals as text: ``c<module>\\n<name>\\n``.)"""
    raw = pickle.dumps(obj, protocol=2)
    for name, new, old in moves:
        new_ref, old_ref = f"c{new}\n{name}\n".encode(), f"c{old}\n{name}\n".encode()
        assert new_ref in raw, name
        raw = raw.replace(new_ref, old_ref)
    return raw


def test_a_live_state_pickled_in_the_live_step_module_resumes_as_the_same_state() -> None:
    seq = items(3, 400)
    state, _ = step_many(None, seq[:250], CFG, "p1")
    assert state.model.forecaster is not None and state.model.forecaster.models
    old = at_old_place(state, ("TwinModelState", "operators.ml.live_state", "operators.ml.live_step"))
    assert b"operators.ml.live_state" not in old
    resumed = from_snapshot(old)
    assert isinstance(resumed, TwinModelState)
    assert to_snapshot(resumed) == to_snapshot(pickle.loads(pickle.dumps(state, protocol=2)))  # as resumed in place
    _, expected = step_many(state, seq[250:], CFG, "p1")
    _, got = step_many(resumed, seq[250:], CFG, "p1")
    assert got == expected and got


def test_an_earlier_forecaster_layout_with_holt_and_window_quantile_in_the_forecast_module_resumes() -> None:
    cfg = ForecastConfig(horizon=4, window=20)
    samples = forecaster_samples(9, 120)
    f = SensorForecasts(cfg)
    for readings, calibrate in samples[:60]:
        f.update(readings, calibrate=calibrate)
    models = {}
    for name, a in f.models.items():  # each sensor as the per-object layout held it
        assert a[SEEN] >= cfg.horizon
        holt = Holt(cfg.alpha, cfg.beta)
        holt.level, holt.trend = a[LEVEL], a[TREND]
        errors = WindowQuantile(cfg.coverage, cfg.window)
        errors.values[:] = array("d", error_ring(a, cfg.horizon, cfg.window).tolist())
        errors.n = int(a[ERRORS_SEEN])
        pending = list(a[PENDING : PENDING + cfg.horizon])
        state = {"model": holt, "pending": pending, "errors": errors, "n": int(a[SEEN])}
        models[name] = EarlierLayout(_SensorModel, state)
    earlier = EarlierLayout(SensorForecasts, {"config": cfg, "models": models})
    old = at_old_place(
        earlier,
        ("Holt", "operators.ml.holt", "operators.ml.forecast"),
        ("WindowQuantile", "operators.ml.quantiles", "operators.ml.forecast"),
    )
    assert b"operators.ml.holt" not in old and b"operators.ml.quantiles" not in old
    resumed = from_snapshot(old)
    assert isinstance(resumed, SensorForecasts) and list(resumed.models) == list(f.models)
    for readings, calibrate in samples[60:]:
        f.update(readings, calibrate=calibrate)
        resumed.update(readings, calibrate=calibrate)
        assert repr(resumed.forecast()) == repr(f.forecast())
