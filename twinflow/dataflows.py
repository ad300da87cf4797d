"""Entry points for plain Bytewax: the flows built from the configuration (file and environment).

Flows take their settings as an argument (they never read configuration); these functions read it
and build them, so ``python -m bytewax.run`` can start a flow the way ``twinflow run`` does::

    python -m bytewax.run "twinflow.dataflows:telemetry()" -w 1
    python -m bytewax.run "twinflow.dataflows:twin(tail=False)" -w 1
"""

from __future__ import annotations

import importlib
import logging

from bytewax.dataflow import Dataflow

from twinflow.settings import load_settings

FLOWS = ("pipeline", "telemetry", "twin", "models", "alerts")


def get_flow(name: str, tail: bool = True) -> Dataflow:
    """The flow ``flows.<name>`` built from the settings in effect."""
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}: choose one of {', '.join(FLOWS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return importlib.import_module(f"flows.{name}").build_flow(load_settings(), tail=tail)


def pipeline(tail: bool = True) -> Dataflow:
    return get_flow("pipeline", tail)


def telemetry(tail: bool = True) -> Dataflow:
    return get_flow("telemetry", tail)


def twin(tail: bool = True) -> Dataflow:
    return get_flow("twin", tail)


def models(tail: bool = True) -> Dataflow:
    return get_flow("models", tail)


def alerts(tail: bool = True) -> Dataflow:
    return get_flow("alerts", tail)
