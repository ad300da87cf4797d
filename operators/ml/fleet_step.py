"""The fleet's failure-model step and the items a twin sends it.

The per-twin step is :func:`operators.ml.live_step.step` (the models flow and ``twinflow replay``
both run it); with failure prediction on, it emits :class:`FleetItem` records: the twin's failure
features every ``predict_every`` samples, and its labelled history when it fails. The models flow
re-keys them by fleet and runs :class:`FleetStep` (through :func:`operators.ml.live_step.fleet_step`)
in a second ``stateful_map``, which learns from the histories and answers features with a
:class:`FleetPrediction` (none until it has learned a failure). The state is picklable.

>>> from operators.ml.config import FailureConfig
>>> fleet, out = FleetStep(FailureConfig())(None, FleetItem("p1", "fleet", 0, features={"a": 1.0}))
>>> out, fleet.n_failures  # nothing learned yet: no prediction
([], 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from operators.ml.config import FailureConfig
from operators.ml.failure import FleetFailureModel, RulEstimate


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
    prediction: RulEstimate


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


__all__ = ["FleetItem", "FleetPrediction", "FleetStep"]
