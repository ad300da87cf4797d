"""A sensor the models take for a state (operators/ml/states.py) is not forecast, as a boolean is not:
its forecaster is dropped when it becomes one (nothing stale is published), it is forecast afresh
when it stops being one, a sensor named in ``[ml.states] sensors`` never is; the per-reading path
(``TwinModel.update``) and the deferred column-wise one (``ForecastBatch``) give the same records."""

from __future__ import annotations

import pickle
import random

from operators.ml.config import AnomalyConfig, ForecastConfig, ModelConfig, StatesConfig
from operators.ml.forecast import ForecastBatch
from operators.ml.twin_model import TwinModel


def _config(**states: object) -> ModelConfig:
    return ModelConfig(
        anomaly=AnomalyConfig(warmup=20, window=3),
        forecast=ForecastConfig(horizon=3, window=10),
        states=StatesConfig(**states),  # type: ignore[arg-type]
    )


def _samples(n: int, revoke_at: int | None = None) -> list[dict[str, float]]:
    """A pump: ``running`` switches 0/1 every 40 samples (from sample 30 on), the level follows it;
    from ``revoke_at`` on ``running`` reads a fraction (a level after all)."""
    rng = random.Random(3)
    out = []
    for t in range(n):
        running = float(t >= 30 and (t // 40) % 2 == 0)
        if revoke_at is not None and t >= revoke_at:
            running = 0.5 + 0.01 * (t % 7)
        out.append({"running": running, "level": 2.0 + 3.0 * running + rng.gauss(0, 0.1)})
    return out


def test_a_running_flag_is_no_longer_forecast_once_it_is_a_state() -> None:
    m = TwinModel(_config())
    first = m.update(0, {"running": 0.0, "level": 2.0})  # one value so far: not a state yet
    assert first.forecasts is not None and set(first.forecasts) == {"running", "level"}
    outs = [m.update(t, s) for t, s in enumerate(_samples(300)) if t]
    assert m.states.states == {"running"}
    switched = next(t for t, s in enumerate(_samples(300)) if s["running"])
    for out in outs[switched - 1 :]:  # (outs[k] is sample k + 1)
        assert out.forecasts is not None and set(out.forecasts) == {"level"}
    assert m.forecaster is not None and "running" not in m.forecaster.models
    assert m.forecaster.seen("level") == 300


def test_a_state_revoked_is_forecast_afresh() -> None:
    m = TwinModel(_config())
    samples = _samples(300, revoke_at=200)
    outs = [m.update(t, s) for t, s in enumerate(samples)]
    assert not m.states.states and "running" in m.states.never
    assert "running" not in (outs[199].forecasts or {})
    assert "running" in (outs[200].forecasts or {})
    assert m.forecaster is not None and m.forecaster.seen("running") == 100  # since it became a level


def test_a_sensor_named_a_state_is_never_forecast() -> None:
    m = TwinModel(_config(sensors=("running",)))
    outs = [m.update(t, s) for t, s in enumerate(_samples(200))]
    assert all(set(out.forecasts or {}) == {"level"} for out in outs)


def test_a_snapshot_that_still_forecasts_a_state_resumes_without_it() -> None:
    """A twin pickled before states were left out of the forecasts (its forecaster learned the state)."""
    m = TwinModel(_config())
    samples = _samples(200)
    for t, s in enumerate(samples[:100]):
        m.update(t, s)
    assert m.forecaster is not None
    m.forecaster.update({"running": 1.0})  # what such a twin's forecaster holds
    assert "running" in m.forecaster.forecast()
    resumed = pickle.loads(pickle.dumps(m))
    assert set(resumed.update(100, samples[100]).forecasts or {}) == {"level"}


def test_deferred_batches_give_the_per_reading_forecasts() -> None:
    """The live flow's path (a batch learned column-wise at its end, cut anywhere) against update()
    reading by reading, across the state's detection and its revocation, with samples not learned."""
    rng = random.Random(5)
    samples = _samples(400, revoke_at=300)
    learn = [rng.random() > 0.05 for _ in samples]
    publish = [rng.random() < 0.5 for _ in samples]
    for states in ({}, {"sensors": ("running",)}):
        one, many = TwinModel(_config(**states)), TwinModel(_config(**states))
        expected = [
            one.update(t, s, learn=learned, forecasts=p).forecasts
            for t, (s, learned, p) in enumerate(zip(samples, learn, publish, strict=True))
        ]
        got: list = []
        batch, t = ForecastBatch(), 0
        while t < len(samples):
            stop = min(t + rng.randint(1, 60), len(samples))
            for k in range(t, stop):
                many.update(k, samples[k], learn=learn[k], forecasts=publish[k], deferred=batch)
            assert many.forecaster is not None
            got += [out[0] if out is not None else None for out in batch.run(many.forecaster)]
            t = stop
        for k, (out, want) in enumerate(zip(got, expected, strict=True)):
            if publish[k]:
                assert repr(out) == repr(want), k
                assert ("running" in out) == (not states and (k < 30 or k >= 300)), k  # forecast unless a state
        assert one.forecaster is not None and many.forecaster is not None
        assert {n: m.tobytes() for n, m in one.forecaster.models.items()} == {
            n: m.tobytes() for n, m in many.forecaster.models.items()
        }
