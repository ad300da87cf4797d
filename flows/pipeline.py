"""The fused pipeline flow: ``telemetry.raw`` read once for ingest, reconciliation and models.

One Bytewax dataflow, one Kafka input over every topic these three flows read, and the steps
of :mod:`flows.telemetry`, :mod:`flows.twin` and :mod:`flows.models` behind it, each in a
scope of its own (``ingest``, ``reconcile``, ``models``): the same code, the same sinks
(idempotent), the same outputs as running the three flows side by side, in one process
instead of three. Keyed steps are keyed by twin, so it scales out with processes
(``-p N``, or ``-i/-a`` across machines) over the topics' partitions like every flow.

Each polled batch is decoded once (:meth:`operators.ingest.ReadingRules.decode`: the envelopes
judged by one rule set and one duplicate guard) and every part splits the decoded batch its way.

The alerts flow stays separate: it reads the models' outputs from Kafka, and a separate
process lets it drain them at its own pace (see docs/performance.md).

Run it::

    twinflow run pipeline                     # recovery on, 1 process
    twinflow run pipeline -p 2                # 2 processes on this machine
    twinflow run alerts                       # alert lifecycle, database rows of scores
"""

from __future__ import annotations

import logging

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator

import flows.models
import flows.telemetry
import flows.twin
from connectors.kafka.source import kafka_messages
from flows.readings import reading_rules
from flows.settings import DataflowSettings as Settings
from operators.ingest import Polled

log = logging.getLogger("twinflow.pipeline")


def input_topics(settings: Settings) -> dict[str, list[str]]:
    """Per part of the pipeline, the topics it reads (``telemetry.raw`` is read by all three)."""
    raw, tw, a = settings.topics.raw, settings.twin, settings.alerts
    return {
        "ingest": [raw],
        "reconcile": [raw, tw.desired_topic, tw.acks_topic],
        "models": [raw, a.status_topic, settings.topics.model_control, settings.topics.events],
    }


def decoded(settings: Settings, messages: Stream[KafkaSourceMessage]) -> Stream[Polled]:
    """Each polled batch with its telemetry decoded and judged once, for all three parts."""
    rules, raw = reading_rules(settings), settings.topics.raw
    return op.flat_map_batch(
        "decode", messages, lambda batch: [Polled(batch, rules.decode([m for m in batch if m.topic == raw]))]
    )


@operator
def ingest(step_id: str, polled: Stream[Polled], settings: Settings) -> None:
    """Telemetry rows to PostgreSQL and rejects to the DLQ (:func:`flows.telemetry.attach_polled`)."""
    topics = frozenset(input_topics(settings)["ingest"])
    flows.telemetry.attach_polled(settings, op.map("topics", polled, lambda p: p.only(topics)))


@operator
def reconcile(step_id: str, polled: Stream[Polled], settings: Settings, tail: bool) -> None:
    """Per-twin state, windows, commands and the desired-state gate (:func:`flows.twin.attach_polled`)."""
    topics = frozenset(input_topics(settings)["reconcile"])
    flows.twin.attach_polled(settings, op.map("topics", polled, lambda p: p.only(topics)), idle_ticks=tail)


@operator
def models(step_id: str, polled: Stream[Polled], settings: Settings) -> None:
    """Per-twin anomaly scores, forecasts and failure predictions (:func:`flows.models.attach_polled`)."""
    flows.models.attach_polled(settings, polled)  # it skips topics it does not read


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-pipeline") -> Dataflow:
    """The fused dataflow; ``tail=False`` stops at the end of the topics (tests, backfills).

    The ingest part writes the telemetry rows, so the reconciliation part never does
    (``twin.ingest`` is ignored here: it would write every row twice)."""
    settings = settings.model_copy(update={"twin": settings.twin.model_copy(update={"ingest": False})})
    topics = list(dict.fromkeys(t for part in input_topics(settings).values() for t in part))
    flow = Dataflow(flow_id)
    polled = decoded(settings, kafka_messages(flow, settings, topics, tail=tail))
    ingest("ingest", polled, settings)
    reconcile("reconcile", polled, settings, tail)
    models("models", polled, settings)
    return flow
