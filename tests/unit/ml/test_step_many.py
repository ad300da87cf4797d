"""The models flow's batch entry point: one call per twin and batch, same records as one call per item."""

import copy
import math
import random
from array import array
from datetime import UTC, datetime, timedelta

from operators.ml.config import AnomalyConfig, FailureConfig, ForecastConfig, ModelConfig
from operators.ml.live_state import LiveModelConfig
from operators.ml.live_step import Event, Reading, Reset, Status, step, step_many

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
    """operators.ml.holt.Holt replaces River's HoltWinters (whose private attributes we read before):
    compared through River's public API (level, trend, forecast)."""
    import pickle

    from river import time_series

    from operators.ml.forecast import _SensorModel
    from operators.ml.holt import Holt

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
    """operators.ml.quantiles.WindowQuantile replaces River's RollingQuantile (a float64 ring instead
    of a sorted window): the same numbers on partial and full windows, ties, extreme q."""
    import pickle

    from river import stats

    from operators.ml.quantiles import WindowQuantile

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


def rivers_forecasts(cfg, samples, errors32=True):
    """What the forecaster computed with River's models, one per sensor: HoltWinters (additive, no
    season) for the forecast, RollingQuantile of the absolute errors of the forecasts made
    ``horizon`` samples before (rounded to float32 as the forecaster keeps them, unless not
    ``errors32``) for the interval. Yields each sample's forecasts."""
    from collections import deque

    import numpy as np
    from river import stats, time_series

    models: dict = {}
    for readings, calibrate in samples:
        for name, y in readings.items():
            if y is None or y.__class__ is bool or not math.isfinite(y):
                continue
            if name not in models:
                models[name] = (
                    time_series.HoltWinters(cfg.alpha, cfg.beta),
                    deque(maxlen=cfg.horizon),
                    stats.RollingQuantile(cfg.coverage, window_size=cfg.window),
                    [0],
                )
            model, pending, errors, n = models[name]
            if calibrate and len(pending) == cfg.horizon:
                e = abs(y - pending[0])
                errors.update(float(np.float32(e)) if errors32 else e)
            model.learn_one(y)
            n[0] += 1
            pending.append(model.forecast(cfg.horizon)[-1] if n[0] >= 2 else y)
        out = {}
        for name, (_model, pending, errors, n) in models.items():
            width = errors.get() if n[0] > cfg.horizon else None
            w = math.nan if width is None else width
            out[name] = (pending[-1], pending[-1] - w, pending[-1] + w)
        yield out


def forecaster_samples(seed: int, n: int) -> list:
    """Samples of three sensors: one sometimes missing, non-finite or a boolean; some anomalous
    (``calibrate`` False)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        readings = {"a": 20.0 + 0.05 * i + rng.gauss(0, 1), "b": rng.gauss(-3, 0.5)}
        if rng.random() < 0.8:
            readings["c"] = rng.choice([rng.gauss(100, 5)] * 8 + [math.nan, True, None])
        out.append((readings, rng.random() > 0.1))
    return out


def test_packed_forecaster_is_rivers_models_bit_for_bit() -> None:
    """SensorForecasts keeps every sensor in flat arrays (operators/ml/forecast.py): per sample, the
    same forecasts and intervals as River's HoltWinters and RollingQuantile per sensor, whether a
    sensor reported, was left out or came later; also across a pickle round trip."""
    import pickle

    from operators.ml.config import ForecastConfig
    from operators.ml.forecast import SensorForecasts

    for cfg in (ForecastConfig(horizon=4, window=20), ForecastConfig(horizon=1, window=10, beta=0.0)):
        samples = forecaster_samples(7, 150)
        f = SensorForecasts(cfg)
        for k, ((readings, calibrate), expected) in enumerate(
            zip(samples, rivers_forecasts(cfg, samples), strict=True)
        ):
            f.update(readings, calibrate=calibrate)
            got = {name: (fc.value, fc.low, fc.high) for name, fc in f.forecast().items()}
            assert repr(got) == repr(expected)  # NaN intervals before calibration
            if k == 60:
                f = pickle.loads(pickle.dumps(f))
        assert f.seen("a") == 150 and f.seen("zz") == 0


def test_column_wise_forecasts_are_the_per_sample_ones_bit_for_bit() -> None:
    """SensorForecasts.update_many (a twin's batch, sensor by sensor): after every batch the same
    state bytes as update() sample by sample, and at each asked-for sample the same forecasts and
    samples seen, whatever the batch cut, with samples not learned and a sensor that comes later."""
    from operators.ml.config import ForecastConfig
    from operators.ml.forecast import ForecastBatch, SensorForecasts

    rng = random.Random(11)
    for cfg in (ForecastConfig(horizon=4, window=20), ForecastConfig(horizon=1, window=10, beta=0.0)):
        samples = forecaster_samples(5, 300)
        for i in range(150, 300):
            samples[i][0]["late"] = float(i % 7)
        learn = [rng.random() > 0.05 for _ in samples]
        one, many = SensorForecasts(cfg), SensorForecasts(cfg)
        expected = []
        for (readings, calibrate), learned in zip(samples, learn, strict=True):
            one.update(readings, learn=learned, calibrate=calibrate)
            state = {n: m.tobytes() for n, m in one.models.items()}
            expected.append((one.forecast(), {name: one.seen(name) for name in one.models}, state))
        got, start, batch = [], 0, ForecastBatch()
        while start < len(samples):
            stop = min(start + rng.randint(1, 40), len(samples))
            for (readings, calibrate), learned in zip(samples[start:stop], learn[start:stop], strict=True):
                batch.add(readings if learned else None, calibrate, rng.random() < 0.7)
            publish = list(batch.publish)
            for k, out in enumerate(batch.run(many)):
                assert (out is not None) == publish[k]
                got.append(out)
            start = stop
            assert learned_state(many) == expected[stop - 1][2]
        for out, (forecasts, seen, _) in zip(got, expected, strict=True):
            if out is not None:
                assert repr(out[0]) == repr(forecasts)  # NaN intervals before calibration
                assert out[1] == {name: n for name, n in seen.items() if name in out[0]}


def test_float32_errors_move_the_interval_by_at_most_2_to_the_minus_24() -> None:
    """The error ring is float32 (operators/ml/forecast.py): against the float64 errors it replaced,
    the forecast is the same and each bound moves by at most 2⁻²⁴ of the half-width (the quantile
    interpolates between two errors, each rounded to float32) plus the rounding of the bound."""
    from operators.ml.config import ForecastConfig

    cfg = ForecastConfig()
    samples = forecaster_samples(11, 600)
    moved = 0
    for exact, rounded in zip(
        rivers_forecasts(cfg, samples, errors32=False), rivers_forecasts(cfg, samples), strict=True
    ):
        for name, (value, low, high) in exact.items():
            value32, low32, high32 = rounded[name]
            assert value32 == value
            if math.isnan(low):
                assert math.isnan(low32)
                continue
            w = high - value
            for a, b in ((low, low32), (high, high32)):
                assert abs(a - b) <= 2**-24 * w + 2 * math.ulp(abs(value) + w)
                moved += a != b
    assert moved  # the bound is not met trivially


def test_forecasts_of_the_float64_error_layout_resume() -> None:
    """States pickled while the error ring held doubles (one array per sensor, no ``errors32`` mark)
    resume with the errors in float32: the same forecasts and intervals as the new layout's."""
    import pickle

    from operators.ml.config import ForecastConfig
    from operators.ml.forecast import PENDING, SensorForecasts, error_ring

    cfg = ForecastConfig(horizon=4, window=21)
    samples = forecaster_samples(9, 200)
    for cut in (2, 10, 30, 150):
        f = SensorForecasts(cfg)
        for readings, calibrate in samples[:cut]:
            f.update(readings, calibrate=calibrate)
        models = {
            name: a[: PENDING + cfg.horizon] + array("d", error_ring(a, cfg.horizon, cfg.window).tolist())
            for name, a in f.models.items()
        }
        old = pickle.loads(pickle.dumps(EarlierLayout(SensorForecasts, {"config": cfg, "models": models})))
        new = pickle.loads(pickle.dumps(f))
        assert [len(a) for a in old.models.values()] == [len(a) for a in f.models.values()]
        for readings, calibrate in samples[cut:]:
            new.update(readings, calibrate=calibrate)
            old.update(readings, calibrate=calibrate)
            assert repr(old.forecast()) == repr(new.forecast())


def test_forecasts_of_the_earlier_layout_resume() -> None:
    """States pickled before the sensors were packed (a _SensorModel per sensor: Holt, the pending
    forecasts in a list ring or, earlier, a deque, the errors in a WindowQuantile or River's
    RollingQuantile) resume on the same forecasts and intervals, full windows or not."""
    import pickle
    from collections import deque

    from river import stats

    from operators.ml.config import ForecastConfig
    from operators.ml.forecast import (
        ERRORS_SEEN,
        FIRST,
        LEVEL,
        PENDING,
        SEEN,
        TREND,
        SensorForecasts,
        _SensorModel,
        error_ring,
    )
    from operators.ml.holt import Holt
    from operators.ml.quantiles import WindowQuantile

    cfg = ForecastConfig(horizon=4, window=20)
    samples = forecaster_samples(8, 120)
    for cut in (1, 3, 4, 15, 37, 90):
        f = SensorForecasts(cfg)
        for readings, calibrate in samples[:cut]:
            f.update(readings, calibrate=calibrate)
        for errors_kind in ("ring", "river"):
            for pending_kind in ("list", "deque"):
                models = {}
                for name, a in f.models.items():  # what the earlier layout held for this sensor
                    n = int(a[SEEN])
                    holt = Holt(cfg.alpha, cfg.beta)
                    holt.first = a[FIRST] if n == 1 else None
                    if n >= 2:
                        holt.level, holt.trend = a[LEVEL], a[TREND]
                    ring = list(a[PENDING : PENDING + min(n, cfg.horizon)])
                    pending: object = ring
                    if pending_kind == "deque":
                        in_order = [ring[(n - len(ring) + i) % cfg.horizon] for i in range(len(ring))]
                        pending = deque(in_order, maxlen=cfg.horizon)
                    seen = int(a[ERRORS_SEEN])
                    values = array("d", error_ring(a, cfg.horizon, cfg.window).tolist())
                    errors: object = WindowQuantile(cfg.coverage, cfg.window)
                    errors.values[:] = values
                    errors.n = seen
                    if errors_kind == "river":
                        errors = stats.RollingQuantile(cfg.coverage, window_size=cfg.window)
                        for i in range(max(seen - cfg.window, 0), seen):  # in time order
                            errors.update(values[i % cfg.window])
                    state = {"model": holt, "pending": pending, "errors": errors, "n": n}
                    models[name] = EarlierLayout(_SensorModel, state)
                earlier = EarlierLayout(SensorForecasts, {"config": cfg, "models": models})
                old, new = pickle.loads(pickle.dumps(earlier)), pickle.loads(pickle.dumps(f))
                assert isinstance(old, SensorForecasts) and list(old.models) == list(f.models)
                for readings, calibrate in samples[cut:]:
                    new.update(readings, calibrate=calibrate)
                    old.update(readings, calibrate=calibrate)
                    assert repr(old.forecast()) == repr(new.forecast())


def test_small_batches_run_row_by_row_with_the_column_wise_numbers(monkeypatch) -> None:
    """SensorForecasts.update_many runs batches of up to ROW_BY_ROW samples sample by sample (update,
    forecast): the same forecasts, samples seen and state bytes as the column-wise path, on samples
    with missing, non-finite and boolean values, samples not learned and a sensor that comes later."""
    from operators.ml import forecast
    from operators.ml.config import ForecastConfig
    from operators.ml.forecast import SensorForecasts

    limit = forecast.ROW_BY_ROW
    assert limit >= 1
    rng = random.Random(5)
    for cfg in (ForecastConfig(horizon=4, window=20), ForecastConfig(horizon=1, window=10, beta=0.0)):
        samples = forecaster_samples(3, 250)
        for i in range(120, 250):
            samples[i][0]["late"] = rng.choice([float(i % 5), math.inf, -math.inf, 1e39])
        cuts, start = [], 0
        while start < len(samples):
            cuts.append((start, min(start + rng.randint(1, limit), len(samples))))
            start = cuts[-1][1]
        flags = [(rng.random() > 0.05, rng.random() < 0.5) for _ in samples]
        runs = []
        for row_by_row in (limit, 0):
            monkeypatch.setattr(forecast, "ROW_BY_ROW", row_by_row)
            f, outs = SensorForecasts(cfg), []
            for a, b in cuts:
                rows = [r if learn else None for (r, _), (learn, _) in zip(samples[a:b], flags[a:b], strict=True)]
                calibrate = [c for _, c in samples[a:b]]
                outs.append(repr(f.update_many(rows, calibrate, [p for _, p in flags[a:b]])))
                outs.append(repr(learned_state(f)))
            runs.append(outs)
        assert runs[0] == runs[1]
        assert "SensorForecast(horizon" in runs[0][-4]  # forecasts were published and compared


def learned_state(f) -> dict[str, bytes]:
    """A forecaster's state bytes per sensor (``seen`` learns its held samples first)."""
    f.seen("")
    return {name: m.tobytes() for name, m in f.models.items()}


def test_samples_held_until_a_forecast_learn_as_sample_by_sample() -> None:
    """SensorForecasts.update_many holds samples until one is published (a tailing flow calls it
    with about one sample per twin, forecasts every few samples): at each published sample the same
    forecasts and samples seen as update() sample by sample, and the same state bytes when it is
    read, pickled and resumed, or reset while samples are held; also across samples of another
    sensor set, ints, booleans, missing and non-finite values, and samples not learned."""
    import pickle

    from operators.ml.forecast import SensorForecasts

    rng = random.Random(3)
    for cfg in (ForecastConfig(horizon=4, window=20), ForecastConfig(horizon=1, window=10, beta=0.0)):
        samples = []
        for i in range(700):
            readings = {"a": 20.0 + 0.05 * i + rng.gauss(0, 1), "b": rng.gauss(-3, 0.5), "c": rng.gauss(100, 5)}
            if i > 150 and rng.random() < 0.06:  # another sensor set or another kind of value
                readings[rng.choice("abc")] = rng.choice([math.nan, True, None, 7, -math.inf])
                if rng.random() < 0.3:
                    del readings["c"]
                if rng.random() < 0.3:
                    readings[rng.choice(["late", "later"])] = float(i % 9)
            samples.append((readings, rng.random() > 0.1, rng.random() > 0.03))  # calibrate, learn
        one, held = SensorForecasts(cfg), SensorForecasts(cfg)
        holding = published = 0
        for i, (readings, calibrate, learn) in enumerate(samples):
            publish = i % 10 == 9
            one.update(readings, learn=learn, calibrate=calibrate)
            [out] = held.update_many([readings if learn else None], [calibrate], [publish])
            holding += held._held is not None
            if publish:
                published += 1
                assert out is not None and repr(out[0]) == repr(one.forecast())
                assert out[1] == {name: one.seen(name) for name in out[0]}
            else:
                assert out is None
            if i % 37 == 5:  # a snapshot while samples are held: what sample by sample would hold
                held = pickle.loads(pickle.dumps(held))
            if i % 53 == 7:
                assert held.seen("a") == one.seen("a")
            if i % 41 == 3:
                assert learned_state(held) == learned_state(one)
            if i == 444:
                one.reset()
                held.reset()
        assert holding > 400 and published == 70  # samples were held, forecasts compared
        assert learned_state(held) == learned_state(one)
        # sensors new in the held samples come before those new in the published one, as one by one
        one, held = SensorForecasts(cfg), SensorForecasts(cfg)
        for i, readings in enumerate([{"a": 1.0, "x": 2.0}, {"a": 1.5, "x": 2.5}, {"a": 1.7, "y": 3.0}]):
            one.update(readings)
            [out] = held.update_many([readings], [True], [i == 2])
        assert list(out[0]) == list(one.forecast()) == ["a", "x", "y"]


def test_samples_never_published_are_held_at_most_a_few_at_a_time() -> None:
    """A forecaster whose forecasts are never published (``forecast_every`` 0, ``twinflow replay``)
    learns its held samples every ``HOLD_AT_MOST``: what it holds stays bounded, and it learns what
    sample by sample learns."""
    from operators.ml import forecast
    from operators.ml.forecast import SensorForecasts

    rng = random.Random(9)
    one, held = SensorForecasts(ForecastConfig()), SensorForecasts(ForecastConfig())
    most = 0
    for i in range(1000):
        readings = {"a": rng.gauss(5, 1), "b": 0.01 * i}
        one.update(readings)
        assert held.update_many([readings], [True], [False]) == [None]
        most = max(most, len(held._held.calibrate) if held._held is not None else 0)
    assert most == forecast.HOLD_AT_MOST
    assert learned_state(held) == learned_state(one)
