"""Step functions for Bytewax ``stateful_map``: per-twin models and the fleet failure model.

Wiring sketch (flows/ does the I/O)::

    twin_in  = merge(readings, twin.events, twin.model_control)   # keyed by twin_id
    twin_out = op.stateful_map("twin_models", twin_in, TwinStep(config))
    # twin_out items: TwinOutput → anomaly/forecast sinks; FleetItem → re-key by fleet
    fleet_in = op.key_on("fleet", fleet_items, lambda f: f.fleet)
    fleet_out = op.stateful_map("fleet_model", fleet_in, FleetStep(config.failure))
    # fleet_out items: (twin_id, ts, FailurePrediction) → failure-prediction sink

Twins score anomalies and forecasts locally; every ``predict_every``-th sample they send their
failure features to the fleet key, which predicts RUL/P(failure) and learns from the labelled
histories that failures produce. Both states are picklable and versioned.

>>> from operators.ml_config import AnomalyConfig, FailureConfig, ModelConfig
>>> step = TwinStep(ModelConfig(anomaly=AnomalyConfig(warmup=5), failure=FailureConfig()))
>>> state, out = step(None, Reading("p1", ts=0, readings={"a": 1.0}, status="active"))
>>> [type(o).__name__ for o in out]
['TwinOutput', 'FleetItem']
>>> state, out = step(state, ControlRecord(twin_id="p1", action="reset", requested_at="now"))
>>> out, state.anomaly.n_seen
([], 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from operators.failure import FailurePrediction, FleetFailureModel
from operators.ml_config import FailureConfig, ModelConfig
from operators.model_control import ControlRecord
from operators.twin_model import NO_LEARN_STATUSES, TwinModel, TwinOutput


@dataclass(frozen=True, slots=True)
class Reading:
    """One telemetry envelope for the models; ``status`` is the twin's status at that time."""

    twin_id: str
    ts: Any
    readings: dict[str, float]
    status: str = "active"


@dataclass(frozen=True, slots=True)
class TwinEvent:
    """From ``twin.events``: ``kind`` is ``failure`` or ``repair``."""

    twin_id: str
    kind: str
    ts: Any


@dataclass(frozen=True, slots=True)
class FleetItem:
    """Sent from a twin to its fleet: features to predict from, or a labelled history to learn."""

    twin_id: str
    fleet: str
    ts: Any
    features: dict[str, float] | None = None
    labelled: list[tuple[dict[str, float], float]] | None = None


@dataclass(frozen=True, slots=True)
class FleetPrediction:
    twin_id: str
    ts: Any
    prediction: FailurePrediction


class TwinStep:
    """``stateful_map`` mapper for one twin: Reading | TwinEvent | ControlRecord → outputs."""

    def __init__(self, config: ModelConfig, fleet: str = "fleet", predict_every: int = 1):
        self.config = config
        self.fleet = fleet
        self.predict_every = predict_every

    def __call__(self, state: TwinModel | None, item: Any) -> tuple[TwinModel, list[Any]]:
        model = state if state is not None else TwinModel(self.config)
        if isinstance(item, ControlRecord):
            if item.action == "reset":
                model.reset()
            return model, []
        if isinstance(item, TwinEvent):
            labelled = model.on_event(item.kind, item.ts)
            if labelled:
                return model, [FleetItem(item.twin_id, self.fleet, item.ts, labelled=labelled)]
            return model, []
        out = model.update(item.ts, item.readings, learn=item.status not in NO_LEARN_STATUSES)
        outputs: list[Any] = [out]
        history = model.history
        if history is not None and history.age % self.predict_every == 0:
            feats = dict(history.last_features)
            outputs.append(FleetItem(item.twin_id, self.fleet, item.ts, features=feats))
        return model, outputs


class FleetStep:
    """``stateful_map`` mapper for one fleet: FleetItem → FleetPrediction (or nothing)."""

    def __init__(self, config: FailureConfig | None = None):
        self.config = config or FailureConfig()

    def __call__(
        self, state: FleetFailureModel | None, item: FleetItem
    ) -> tuple[FleetFailureModel, list[FleetPrediction]]:
        fleet = state if state is not None else FleetFailureModel(self.config)
        if item.labelled is not None:
            fleet.learn_history(item.labelled)
            return fleet, []
        if item.features is None or not fleet.n_failures:
            return fleet, []
        return fleet, [FleetPrediction(item.twin_id, item.ts, fleet.predict(item.features))]


__all__ = ["FleetItem", "FleetPrediction", "FleetStep", "Reading", "TwinEvent", "TwinOutput", "TwinStep"]
