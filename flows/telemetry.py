"""Telemetry ingest flow: Kafka ``telemetry.raw`` → decode/validate → PostgreSQL; rejects → DLQ.

Wiring only; the logic is in :mod:`operators.telemetry.ingest`, the I/O in :mod:`connectors`.

Run it::

    twinflow run                                     # recovery on, 1 worker
    python -m bytewax.run "twinflow.dataflows:telemetry()" -w 1
"""

from __future__ import annotations

import logging

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream

from connectors.kafka.clients import producer_config
from connectors.kafka.messages import dead_letter_message
from connectors.kafka.sink import MessageSink
from connectors.kafka.source import kafka_messages
from connectors.postgres.telemetry_sink import TelemetrySink
from flows.readings import reading_rules
from flows.settings import DataflowSettings as Settings

log = logging.getLogger("twinflow.flow")


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-telemetry") -> Dataflow:
    """Build the ingest dataflow; ``tail=False`` stops at the end of the topic (tests, backfills)."""
    flow = Dataflow(flow_id)
    attach(flow, settings, kafka_messages(flow, settings, [settings.topics.raw], tail=tail))
    return flow


def attach(flow: Dataflow, settings: Settings, messages: Stream[KafkaSourceMessage]) -> None:
    """Add decoding, the telemetry rows and the dead letters of ``telemetry.raw`` ``messages`` to ``flow``."""
    rules = reading_rules(settings)
    splits = op.flat_map_batch("decode", messages, lambda batch: [rules.split(batch)])
    rows = op.filter("has_rows", op.map("rows", splits, lambda s: s.rows), bool)
    op.output("postgres", rows, TelemetrySink(settings.postgres.conninfo(), batch_size=settings.flow.batch_size))

    dead = op.flat_map(
        "dead_letters",
        splits,
        lambda s: [dead_letter_message(d, settings.topics.dlq) for d in s.dead],
    )
    op.output("dlq", dead, MessageSink(producer_config(settings)))
