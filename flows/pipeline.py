"""The fused pipeline flow: ``telemetry.raw`` read once for ingest, reconciliation and models.

One Bytewax dataflow, one Kafka input over every topic these three flows read, and the steps
of :mod:`flows.telemetry`, :mod:`flows.twin` and :mod:`flows.models` behind it, each in a
scope of its own (``ingest``, ``reconcile``, ``models``): the same code, the same sinks
(idempotent), the same outputs as running the three flows side by side, in one process
instead of three. Keyed steps are keyed by twin, so it scales out with processes
(``-p N``, or ``-i/-a`` across machines) over the topics' partitions like every flow.
Like each flow, the wiring takes its source and sinks as arguments (:func:`dataflow`,
:class:`PipelineSinks`); :func:`build_flow` gives it Kafka and PostgreSQL.

With ``flow.pipeline_ingest = false`` the ingest part is left out: the telemetry flow, run beside
it, writes the telemetry rows and dead letters (their latency is then independent of this flow's
epoch ends, whose snapshot pause grows with its twins; docs/performance.md, "Twins per process").

Each polled batch is decoded once (:meth:`operators.telemetry.ingest.ReadingRules.decode`: the
envelopes judged by one rule set and one duplicate guard) and every part splits it its way, in
its first step taking only the messages of the topics it reads (``own_topics``), as its own
flow would poll them: a polled batch goes through as few Bytewax steps as the outputs allow.

The model outputs' database rows (anomaly scores, forecasts, failure predictions) are written
here too, in the same pass as the reading's telemetry row, and their Kafka messages say so
(:data:`connectors.kafka.messages.STORED`). The alerts flow stays separate: it reads the models'
outputs from Kafka for the alert lifecycle, and a separate process lets it drain them at its own
pace (see docs/performance.md).

Run it::

    twinflow run pipeline                     # recovery on, 1 process
    twinflow run pipeline -p 2                # 2 processes on this machine
    twinflow run alerts                       # alert lifecycle (and rows of the models flow's outputs)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source

import flows.models
import flows.telemetry
import flows.twin
from connectors.kafka.sink import MessageSink
from connectors.kafka.source import kafka_source, messages_only
from connectors.postgres.alert_sinks import ModelOutputSink
from flows.outputs import Sink, overlapped, settled
from flows.readings import reading_rules
from flows.settings import DataflowSettings as Settings
from operators.ml.path_pauses import PathPauses
from operators.telemetry.ingest import Polled

log = logging.getLogger("twinflow.pipeline")


def input_topics(settings: Settings) -> dict[str, list[str]]:
    """Per part of the pipeline, the topics it reads (``telemetry.raw`` is read by all three)."""
    return {
        **({"ingest": [settings.topics.raw]} if settings.flow.pipeline_ingest else {}),
        "reconcile": flows.twin.input_topics(settings),
        "models": flows.models.input_topics(settings),
    }


@dataclass(frozen=True)
class PipelineSinks:
    """The sinks of the three parts: those of the telemetry, twin and models flows, and the model
    outputs' rows (with the separate models flow, the alerts flow writes those)."""

    ingest: flows.telemetry.TelemetrySinks
    reconcile: flows.twin.TwinSinks
    models: Sink
    model_outputs: Sink

    @classmethod
    def of(cls, settings: Settings) -> PipelineSinks:
        """Kafka and PostgreSQL."""
        models = settled(settings, MessageSink.of(settings))
        rows = overlapped(settings, ModelOutputSink(settings.postgres.conninfo()))
        return cls(flows.telemetry.TelemetrySinks.of(settings), flows.twin.TwinSinks.of(settings), models, rows)


def decoded(settings: Settings, polled: Stream[Any]) -> Stream[Polled]:
    """Each polled batch with its telemetry decoded and judged once, for all three parts; Kafka's
    errors are logged and left out in the same step (:func:`messages_only`)."""
    rules, raw = reading_rules(settings), settings.topics.raw

    def decode(batch: list[Any]) -> list[Polled]:
        messages = messages_only(batch)
        return [Polled(messages, rules.decode([m for m in messages if m.topic == raw]))] if messages else []

    return op.flat_map_batch("decode", polled, decode)


@operator
def ingest(step_id: str, polled: Stream[Polled], settings: Settings, sinks: flows.telemetry.TelemetrySinks) -> None:
    """Telemetry rows to PostgreSQL and rejects to the DLQ (:func:`flows.telemetry.attach_polled`)."""
    flows.telemetry.attach_polled(settings, polled, sinks, own_topics=True)


@operator
def reconcile(
    step_id: str, polled: Stream[Polled], settings: Settings, sinks: flows.twin.TwinSinks, tail: bool
) -> None:
    """Per-twin state, windows, commands and the desired-state gate (:func:`flows.twin.attach_polled`)."""
    flows.twin.attach_polled(settings, polled, sinks, idle_ticks=tail, own_topics=True)


@operator
def models(
    step_id: str, polled: Stream[Polled], settings: Settings, sink: Sink, rows: Sink, path: PathPauses | None
) -> None:
    """Per-twin anomaly scores, forecasts and failure predictions to Kafka, and their rows to
    PostgreSQL (:func:`flows.models.attach_polled`)."""
    flows.models.attach_polled(settings, polled, sink, path, own_topics=True, store=rows)


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-pipeline") -> Dataflow:
    """The fused dataflow on Kafka and PostgreSQL; ``tail=False`` stops at the end of the topics
    (tests, backfills). The Kafka source tells the models' silence timers when its path pauses."""
    topics = list(dict.fromkeys(t for part in input_topics(settings).values() for t in part))
    path = PathPauses(started=time.time())
    source = kafka_source(settings, topics, tail=tail, path=path)
    return dataflow(settings, source, PipelineSinks.of(settings), tail=tail, flow_id=flow_id, path=path)


def dataflow(
    settings: Settings,
    source: Source[KafkaSourceMessage],
    sinks: PipelineSinks,
    *,
    tail: bool = True,
    flow_id: str = "twinflow-pipeline",
    path: PathPauses | None = None,
) -> Dataflow:
    """The fused dataflow reading every topic of :func:`input_topics` from ``source``.

    The ingest part (left out when ``flow.pipeline_ingest`` is false) writes the telemetry rows, so the
    reconciliation part never does
    (``twin.ingest`` is ignored here: it would write every row twice). ``tail=False``: no idle
    ticks (event time only). ``path``: the pauses of the source's path (:func:`flows.models.dataflow`)."""
    settings = settings.model_copy(update={"twin": settings.twin.model_copy(update={"ingest": False})})
    flow = Dataflow(flow_id)
    polled = decoded(settings, op.input("kafka_in", flow, source))
    # Bytewax runs sibling steps in the order they were added: the scores go to Kafka before the
    # batch's database writes, the telemetry rows before the twins' (benchmarks/RESULTS.md).
    models("models", polled, settings, sinks.models, sinks.model_outputs, path)
    if settings.flow.pipeline_ingest:
        ingest("ingest", polled, settings, sinks.ingest)
    else:
        log.warning(
            "flow.pipeline_ingest is false: this pipeline writes no telemetry rows; run the telemetry flow"
            " beside it (`twinflow run telemetry`)"
        )
    reconcile("reconcile", polled, settings, sinks.reconcile, tail)
    return flow
