"""The models flow's batch entry point: one call per twin and batch, same records as one call per item."""

import copy
import math
import random
from datetime import UTC, datetime, timedelta

from operators.ml.config import AnomalyConfig, FailureConfig, ForecastConfig, ModelConfig
from operators.ml.live_step import Event, LiveModelConfig, Reading, Reset, Status, step, step_many

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CFG = LiveModelConfig(
    ModelConfig(
        anomaly=AnomalyConfig(warmup=30, window=3),
        forecast=ForecastConfig(horizon=5, window=20),
        failure=FailureConfig(rul_cap=50, horizon=10),
    ),
    forecast_every=5,
    predict_every=7,
)


def items(seed: int, n: int) -> list:
    rng = random.Random(seed)
    out: list = []
    for i in range(n):
        r = rng.random()
        if r < 0.9:
            values = {"temp": 20 + math.sin(i / 9) + rng.gauss(0, 0.1), "rpm": 1450 + rng.gauss(0, 2)}
            if i > 150 and rng.random() < 0.05:
                values["temp"] += 15  # a spike: scores above the threshold
            if i == 120:
                values["vib"] = 0.3  # a new sensor: the models start over
            out.append(Reading(T0 + timedelta(seconds=i), values))
        elif r < 0.94:
            out.append(Status(maintenance=rng.random() < 0.5))
        elif r < 0.97:
            out.append(Event(rng.choice(["failure", "repair"]), T0 + timedelta(seconds=i)))
        else:
            out.append(Reset("ann") if i % 3 else Status(maintenance=False))
    return out


def test_step_many_emits_what_step_emits_item_by_item() -> None:
    seq = items(3, 400)
    one, expected = None, []
    for item in seq:
        one, out = step(one, item, CFG, "p1")
        expected += out
    many, got = None, []
    for start in range(0, len(seq), 23):
        many, out = step_many(many, seq[start : start + 23], CFG, "p1")
        got += out
    assert got == expected
    assert {type(r).__name__ for r in got} >= {"AnomalyScore", "ForecastPoint", "FleetItem"}
    assert many.samples == one.samples and many.held == one.held


def test_the_snapshot_copy_is_independent_and_scores_the_same() -> None:
    seq = items(5, 300)
    state, _ = step_many(None, seq[:200], CFG, "p1")
    snap = copy.deepcopy(state)  # what Bytewax's stateful_map snapshots
    assert snap is not state and snap.model.anomaly is not state.model.anomaly
    _, a = step_many(state, seq[200:], CFG, "p1")
    _, b = step_many(snap, seq[200:], CFG, "p1")
    assert a == b and a


class EarlierLayout:
    """Pickles as an instance of ``cls`` whose attributes were a plain ``__dict__`` (``state``): what
    snapshots written before a class got ``__slots__`` or a new attribute layout hold."""

    def __init__(self, cls: type, state: dict) -> None:
        self.cls, self.state = cls, state

    def __reduce_ex__(self, protocol: object) -> tuple:
        import copyreg

        return copyreg._reconstructor, (self.cls, object, None), self.state


def test_our_holt_recursion_is_rivers_holt_winters_bit_for_bit() -> None:
    """operators.ml.forecast.Holt replaces River's HoltWinters (whose private attributes we read before):
    compared through River's public API (level, trend, forecast)."""
    import pickle

    from river import time_series

    from operators.ml.forecast import Holt, _SensorModel

    rng = random.Random(11)
    ys = [rng.gauss(50, 10) * (1 + i / 100) for i in range(500)]
    for alpha, beta in ((0.3, 0.1), (0.5, None), (0.9, 0.01), (0.4, 0.0)):
        ours, rivers = Holt(alpha, beta), time_series.HoltWinters(alpha, beta)
        for i, y in enumerate(ys):
            ours.learn_one(y)
            rivers.learn_one(y)
            if i >= 1:
                assert ours.level == rivers.level[-1]
                assert ours.trend == (rivers.trend[-1] if rivers.trend else None)
                assert [ours.forecast_at(h) for h in range(1, 11)] == rivers.forecast(10)
        # a state pickled by an earlier version (River's model inside) resumes on the same numbers
        old = EarlierLayout(_SensorModel, {"model": rivers, "pending": None, "errors": None, "n": len(ys)})
        resumed = pickle.loads(pickle.dumps(old)).model
        assert isinstance(resumed, Holt)
        for y in ys[:50]:
            resumed.learn_one(y)
            rivers.learn_one(y)
        assert resumed.forecast_at(10) == rivers.forecast(10)[-1]


def test_window_quantile_is_rivers_rolling_quantile_bit_for_bit() -> None:
    """operators.ml.forecast.WindowQuantile replaces River's RollingQuantile (a float64 ring instead
    of a sorted window): the same numbers on partial and full windows, ties, extreme q; a state
    pickled with River's quantile inside resumes with it."""
    import pickle

    from river import stats

    from operators.ml.config import ForecastConfig
    from operators.ml.forecast import SensorForecasts, WindowQuantile

    rng = random.Random(5)
    for q, size in ((0.9, 200), (0.5, 1), (0.5, 2), (0.0, 7), (1.0, 7), (0.999, 30), (rng.random(), 50)):
        ours, rivers = WindowQuantile(q, size), stats.RollingQuantile(q, window_size=size)
        assert ours.get() is None
        for _ in range(3 * size + 40):
            x = rng.choice((rng.gauss(0, 1e3), float(rng.randint(0, 3))))
            ours.update(x)
            rivers.update(x)
            assert ours.get() == rivers.get()
        back = pickle.loads(pickle.dumps(ours))
        assert (back.q, back.n, back.get()) == (ours.q, ours.n, ours.get())
    cfg = ForecastConfig(horizon=3, window=20)
    f, old = SensorForecasts(cfg), SensorForecasts(cfg)
    ys = [20.0 + rng.gauss(0, 1) for _ in range(100)]
    for y in ys[:50]:
        f.update({"t": y})
        old.update({"t": y})
    old.models["t"].errors = rivers = stats.RollingQuantile(cfg.coverage, window_size=cfg.window)
    ring = f.models["t"].errors
    for i in range(ring.n - cfg.window, ring.n):  # the errors in time order (ring full after 50)
        rivers.update(float(ring.values[i % cfg.window]))  # as an earlier version kept them
    old = pickle.loads(pickle.dumps(old))
    for y in ys[50:]:
        f.update({"t": y})
        old.update({"t": y})
        assert f.forecast() == old.forecast()


def test_forecasts_pending_in_a_deque_resume_from_the_ring() -> None:
    """States pickled before the pending forecasts became a ring (a ``deque``) resume on the same
    forecasts and intervals, whether the deque was full or not."""
    import pickle
    from collections import deque

    from operators.ml.config import ForecastConfig
    from operators.ml.forecast import SensorForecasts, slot_state

    rng = random.Random(8)
    cfg = ForecastConfig(horizon=4, window=20)
    ys = [20.0 + 0.1 * i + rng.gauss(0, 1) for i in range(80)]
    for cut in (3, 4, 37):
        f = SensorForecasts(cfg)
        for y in ys[:cut]:
            f.update({"t": y})
        m = f.models["t"]
        in_order = [m.pending[(m.n - len(m.pending) + i) % cfg.horizon] for i in range(len(m.pending))]
        old = pickle.loads(pickle.dumps(f))
        earlier = {**slot_state(m), "pending": deque(in_order, maxlen=cfg.horizon)}
        old.models["t"] = EarlierLayout(type(m), earlier)
        old = pickle.loads(pickle.dumps(old))
        assert old.models["t"].pending == m.pending
        for y in ys[cut:]:
            f.update({"t": y})
            old.update({"t": y})
            assert repr(f.forecast()) == repr(old.forecast())  # NaN intervals before calibration
