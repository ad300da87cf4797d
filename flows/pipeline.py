"""The fused pipeline flow: ``telemetry.raw`` read once for ingest, reconciliation and models.

One Bytewax dataflow, one Kafka input over every topic these three flows read, and the steps
of :mod:`flows.telemetry`, :mod:`flows.twin` and :mod:`flows.models` behind it, each in a
scope of its own (``ingest``, ``reconcile``, ``models``): the same code, the same sinks
(idempotent), the same outputs as running the three flows side by side, in one process
instead of three. Keyed steps are keyed by twin, so it scales out with processes
(``-p N``, or ``-i/-a`` across machines) over the topics' partitions like every flow.

The alerts flow stays separate: it reads the models' outputs from Kafka, and a separate
process lets it drain them at its own pace (see docs/performance.md).

Run it::

    twinflow run pipeline                     # recovery on, 1 process
    twinflow run pipeline -p 2                # 2 processes on this machine
    twinflow run alerts                       # alert lifecycle, database rows of scores
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator

import flows.models
import flows.telemetry
import flows.twin
from connectors.kafka.source import kafka_messages
from flows.settings import DataflowSettings as Settings

log = logging.getLogger("twinflow.pipeline")


def input_topics(settings: Settings) -> dict[str, list[str]]:
    """Per part of the pipeline, the topics it reads (``telemetry.raw`` is read by all three)."""
    raw, tw, a = settings.topics.raw, settings.twin, settings.alerts
    return {
        "ingest": [raw],
        "reconcile": [raw, tw.desired_topic, tw.acks_topic],
        "models": [raw, a.status_topic, settings.topics.model_control, settings.topics.events],
    }


def _only(topics: list[str]) -> Callable[[list[KafkaSourceMessage]], list[KafkaSourceMessage]]:
    keep = frozenset(topics)
    return lambda batch: [m for m in batch if m.topic in keep]


@operator
def ingest(step_id: str, messages: Stream[KafkaSourceMessage], settings: Settings) -> None:
    """Telemetry rows to PostgreSQL and rejects to the DLQ (:func:`flows.telemetry.attach`)."""
    raw = op.flat_map_batch("topics", messages, _only(input_topics(settings)["ingest"]))
    flows.telemetry.attach(raw.flow(), settings, raw)


@operator
def reconcile(step_id: str, messages: Stream[KafkaSourceMessage], settings: Settings, tail: bool) -> None:
    """Per-twin state, windows, commands and the desired-state gate (:func:`flows.twin.attach`)."""
    mine = op.flat_map_batch("topics", messages, _only(input_topics(settings)["reconcile"]))
    flows.twin.attach(mine.flow(), settings, mine, idle_ticks=tail)


@operator
def models(step_id: str, messages: Stream[KafkaSourceMessage], settings: Settings) -> None:
    """Per-twin anomaly scores, forecasts and failure predictions (:func:`flows.models.attach`)."""
    flows.models.attach(messages.flow(), settings, messages)  # it skips topics it does not read


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-pipeline") -> Dataflow:
    """The fused dataflow; ``tail=False`` stops at the end of the topics (tests, backfills).

    The ingest part writes the telemetry rows, so the reconciliation part never does
    (``twin.ingest`` is ignored here: it would write every row twice)."""
    settings = settings.model_copy(update={"twin": settings.twin.model_copy(update={"ingest": False})})
    topics = list(dict.fromkeys(t for part in input_topics(settings).values() for t in part))
    flow = Dataflow(flow_id)
    messages = kafka_messages(flow, settings, topics, tail=tail)
    ingest("ingest", messages, settings)
    reconcile("reconcile", messages, settings, tail)
    models("models", messages, settings)
    return flow

