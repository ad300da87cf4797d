"""Telemetry ingest flow: Kafka ``telemetry.raw`` → decode/validate → PostgreSQL; rejects → DLQ.

Wiring only; the logic is in :mod:`operators.ingest`, the I/O in :mod:`connectors`.

Run it::

    twinflow run                                     # recovery on, 1 worker
    python -m bytewax.run "flows.telemetry:get_flow()" -w 1
"""

from __future__ import annotations

import logging
from datetime import timedelta

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream

from connectors.kafka.clients import producer_config
from connectors.kafka.messages import dead_letter_message
from connectors.kafka.sink import MessageSink
from connectors.kafka.source import kafka_messages
from connectors.postgres.sink import TelemetrySink
from operators.guard import IngestGuard
from operators.ingest import Limits, split_batch
from operators.twins import TwinRegistry
from twinflow.settings import Settings, load_settings

log = logging.getLogger("twinflow.flow")


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-telemetry") -> Dataflow:
    """Build the ingest dataflow; ``tail=False`` stops at the end of the topic (tests, backfills)."""
    flow = Dataflow(flow_id)
    attach(flow, settings, kafka_messages(flow, settings, [settings.topics.raw], tail=tail))
    return flow


def attach(flow: Dataflow, settings: Settings, messages: Stream[KafkaSourceMessage]) -> None:
    """Add decoding, the telemetry rows and the dead letters of ``telemetry.raw`` ``messages`` to ``flow``."""
    fs = settings.flow
    limits = Limits(
        max_bytes=fs.max_message_bytes,
        max_future_skew=timedelta(seconds=fs.max_future_skew_s),
        max_age=timedelta(days=fs.max_age_days),
        max_dead_letter_bytes=settings.security.max_dead_letter_bytes,
    )
    sec = settings.security
    registry = TwinRegistry.load(sec.twin_registry) if sec.twin_registry else None
    guard = IngestGuard(registry, sec.dedup_entries) if registry or sec.dedup_entries else None

    splits = op.flat_map_batch("decode", messages, lambda batch: [split_batch(batch, limits, guard=guard)])
    rows = op.filter("has_rows", op.map("rows", splits, lambda s: s.rows), bool)
    op.output("postgres", rows, TelemetrySink(settings.postgres.conninfo(), fs.batch_size))

    dead = op.flat_map(
        "dead_letters",
        splits,
        lambda s: [dead_letter_message(d, settings.topics.dlq) for d in s.dead],
    )
    op.output("dlq", dead, MessageSink(producer_config(settings)))


def get_flow(tail: bool = True) -> Dataflow:
    """Entry point for ``python -m bytewax.run "flows.telemetry:get_flow()"``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return build_flow(load_settings(), tail=tail)
