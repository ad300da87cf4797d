"""Telemetry ingest flow: Kafka ``telemetry.raw`` → decode/validate → PostgreSQL; rejects → DLQ.

Wiring only; the logic is in :mod:`operators.telemetry.ingest`, the I/O in :mod:`connectors`. The
wiring takes its source and sinks as arguments (:func:`dataflow`); :func:`build_flow` gives it Kafka
and PostgreSQL, a test gives it Bytewax's ``TestingSource``/``TestingSink`` (tests/unit/test_flows.py).

Run it::

    twinflow run                                     # recovery on, 1 worker
    python -m bytewax.run "twinflow.dataflows:telemetry()" -w 1
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source

from connectors.kafka.messages import dead_letter_message
from connectors.kafka.sink import MessageSink
from connectors.kafka.source import kafka_source, source_messages
from connectors.postgres.telemetry_sink import TelemetrySink
from flows.outputs import Sink, output, overlapped, settled
from flows.readings import own_messages, reading_rules
from flows.settings import DataflowSettings as Settings
from operators.telemetry.ingest import Polled, Split

log = logging.getLogger("twinflow.flow")


@dataclass(frozen=True)
class TelemetrySinks:
    """Where the telemetry flow writes: lists of telemetry rows, and Kafka messages (dead letters)."""

    rows: Sink
    messages: Sink

    @classmethod
    def of(cls, settings: Settings) -> TelemetrySinks:
        """PostgreSQL's ``telemetry`` table (written in the background) and Kafka."""
        rows = overlapped(settings, TelemetrySink(settings.postgres.conninfo(), batch_size=settings.flow.batch_size))
        return cls(rows, settled(settings, MessageSink.of(settings)))


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-telemetry") -> Dataflow:
    """The ingest dataflow on Kafka and PostgreSQL; ``tail=False`` stops at the end of the topic."""
    source = kafka_source(settings, [settings.topics.raw], tail=tail)
    return dataflow(settings, source, TelemetrySinks.of(settings), flow_id=flow_id)


def dataflow(
    settings: Settings,
    source: Source[KafkaSourceMessage],
    sinks: TelemetrySinks,
    *,
    flow_id: str = "twinflow-telemetry",
) -> Dataflow:
    """The ingest dataflow reading ``telemetry.raw`` messages from ``source``."""
    flow = Dataflow(flow_id)
    attach(settings, source_messages(flow, source), sinks)
    return flow


def attach(settings: Settings, messages: Stream[KafkaSourceMessage], sinks: TelemetrySinks) -> None:
    """Add decoding, the telemetry rows and the dead letters after ``telemetry.raw`` ``messages``."""
    rules = reading_rules(settings)
    attach_polled(settings, op.flat_map_batch("poll", messages, lambda batch: [Polled(batch, rules)]), sinks)


def attach_polled(
    settings: Settings, polled: Stream[Polled], sinks: TelemetrySinks, *, own_topics: bool = False
) -> None:
    """The same on polled batches whose telemetry may be decoded already (the pipeline flow);
    ``own_topics``: the batches hold other topics' messages too, decode only ``telemetry.raw``'s."""
    own = own_messages([settings.topics.raw] if own_topics else None)

    def split(p: Polled) -> Split:
        p = own(p)
        return p.readings.split(p.messages)

    splits = op.map("decode", polled, split)
    output("postgres", splits, sinks.rows, lambda s: s.rows or None)

    dead = op.flat_map(
        "dead_letters",
        splits,
        lambda s: [dead_letter_message(d, settings.topics.dlq) for d in s.dead],
    )
    output("dlq", dead, sinks.messages)
