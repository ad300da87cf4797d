"""One twin's online models behind one call: the unit that lives in Bytewax ``stateful_map`` state.

Wiring (flows/): key the stream by twin_id and keep a :class:`TwinModel` per key::

    def step(model, item):                          # item = (ts, readings, status)
        model = model or TwinModel(config)
        out = model.update(ts, readings, learn=status not in NO_LEARN_STATUSES, fleet=fleet)
        return model, out

Failure/repair events (``twin.events``) go to :meth:`TwinModel.on_event`; a failure returns the
labelled history, which the flow routes to the fleet's :class:`~operators.failure.FleetFailureModel`
(a second ``stateful_map`` keyed by fleet or twin type). Reset requests
(``twin.model_control``, see operators/model_control.py) call :meth:`TwinModel.reset`.
The state is picklable and carries ``STATE_VERSION``; an unknown version starts afresh.

>>> from operators.ml_config import AnomalyConfig
>>> m = TwinModel(ModelConfig(anomaly=AnomalyConfig(warmup=20, window=3)))
>>> outs = [m.update(t, {"a": float(t % 3), "b": 1.0}) for t in range(50)]
>>> outs[-1].score.warming_up, m.anomaly.n_learned
(False, 50)
>>> _ = m.update(50, {"a": 1.0, "b": 1.0}, learn=False)
>>> m.anomaly.n_learned
50
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from operators.anomaly import AnomalyDetector, Score
from operators.failure import FailurePrediction, FleetFailureModel, TwinHistory
from operators.forecast import Forecaster, SensorForecast
from operators.ml_config import ModelConfig
from operators.operating_point import OperatingPoint

STATE_VERSION = 2  # 2: operating-point conditioning
# Twin statuses in which the models score but do not learn.
NO_LEARN_STATUSES = frozenset({"maintenance", "simulating"})


class TwinOutput(msgspec.Struct, frozen=True):
    ts: Any
    score: Score
    forecasts: dict[str, SensorForecast] | None = None
    failure: FailurePrediction | None = None


def time_value(ts: Any, unit_s: float) -> float:
    """A timestamp or a number as a float on the failure model's time axis."""
    if isinstance(ts, datetime):
        return ts.timestamp() / unit_s
    return float(ts)


class TwinModel:
    """Anomaly detector (conditioned on the operating point) + optional forecaster + failure features."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or ModelConfig()
        self.reset()

    def reset(self) -> None:
        """Forget everything this twin learned (``twinflow model reset TWIN``)."""
        cfg = self.config
        self.anomaly = AnomalyDetector(cfg.anomaly)
        self.operating_point = OperatingPoint(cfg.operating_point, cfg.anomaly.baseline_halflife)
        self.forecaster = Forecaster(cfg.forecast) if cfg.forecast else None
        self.history = TwinHistory(cfg.failure) if cfg.failure else None

    def __getstate__(self) -> dict[str, Any]:
        return {"_v": STATE_VERSION, **self.__dict__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("_v", None)
        self.__dict__.update(state)
        if version != STATE_VERSION:
            self.reset()

    def update(
        self,
        ts: Any,
        readings: dict[str, float],
        learn: bool = True,
        fleet: FleetFailureModel | None = None,
        forecasts: bool = True,
    ) -> TwinOutput:
        """Score one sample (then learn from it unless ``learn`` is False or it is anomalous).

        ``forecasts=False`` skips building the forecast records (the models still learn); the live
        flow asks for them only on the samples it publishes them."""
        score = self.operating_point.update(ts, readings, self.anomaly, learn, self.config.time_unit_s)
        out_forecasts = None
        if self.forecaster is not None:
            self.forecaster.update(readings, learn=learn, calibrate=not score.is_anomaly)
            out_forecasts = self.forecaster.forecast() if forecasts else None
        failure = None
        if self.history is not None:
            feats = self.history.observe(time_value(ts, self.config.time_unit_s), readings, keep=learn)
            if fleet is not None:
                failure = fleet.predict(feats)
        return TwinOutput(ts, score, out_forecasts, failure)

    def on_event(self, kind: str, ts: Any) -> list[tuple[dict[str, float], float]]:
        """A failure returns this twin's labelled history (for the fleet model); a repair resets it."""
        if self.history is None:
            return []
        t = time_value(ts, self.config.time_unit_s)
        if kind == "failure":
            return self.history.on_failure(t)
        if kind == "repair":
            self.history.on_repair(t)
            return []
        raise ValueError(f"unknown twin event kind {kind!r}: expected 'failure' or 'repair'")
