"""The Kafka input every flow uses: topics from the beginning (or the recovery snapshot).

Offsets live in Bytewax's recovery snapshots, not in a consumer group, so a restarted flow
resumes where its last snapshot ended (sinks are idempotent). Kafka errors are logged and the
flow keeps running (librdkafka reconnects by itself); they never crash it.

If a partition's position becomes invalid (offset out of range: a broker restart that briefly
reports a shorter log, or a snapshot older than the topic's retention), the consumer restarts at
the *earliest* retained offset, never at the end: re-reading is harmless (idempotent sinks),
skipping is silent loss. librdkafka's default would be ``latest``.

On a stop request (:mod:`connectors.stopping`) the source stops reading: the epoch in progress
then completes and is committed with everything read so far, and :mod:`twinflow.runner` ends
the dataflow; in a single-worker run the source does that by raising Bytewax's
``AbortExecution`` from ``next_batch`` (the one exception Bytewax treats as a clean end, where
any other one, KeyboardInterrupt included, is a Rust panic).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import AbortExecution, Source, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING

from connectors.config.contract import ConnectorSettings
from connectors.kafka.clients import client_config, without_bootstrap
from connectors.stopping import STOP

log = logging.getLogger(__name__)


class _StoppablePartition(StatefulSourcePartition[Any, Any]):
    """A Kafka partition that reads nothing once a stop is requested, and ends the run when told."""

    def __init__(self, part: StatefulSourcePartition[Any, Any]) -> None:
        self._part = part

    def next_batch(self) -> list[Any]:
        if STOP.abort_sources.is_set():
            raise AbortExecution("stop requested")
        if STOP.requested.is_set():
            return []
        return self._part.next_batch()

    def next_awake(self) -> datetime | None:
        if STOP.requested.is_set():  # nothing to read: look at the stop flags 20 times a second
            return datetime.now(UTC) + timedelta(milliseconds=50)
        return self._part.next_awake()

    def snapshot(self) -> Any:
        return self._part.snapshot()

    def close(self) -> None:
        self._part.close()


class StoppableKafkaSource(KafkaSource):
    """Bytewax's ``KafkaSource`` whose partitions obey :data:`connectors.stopping.STOP`."""

    def __init__(self, brokers: list[str], topics: list[str], **options: Any) -> None:
        super().__init__(brokers, topics, **options)
        self.topics = list(topics)  # what it reads (its recovery state is keyed <partition>-<topic>)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _StoppablePartition:
        return _StoppablePartition(super().build_part(step_id, for_part, resume_state))


def kafka_source(settings: ConnectorSettings, topics: list[str], *, tail: bool) -> StoppableKafkaSource:
    """The flows' Kafka source over ``topics``; ``tail=False`` ends at the end of every partition."""
    return StoppableKafkaSource(
        settings.kafka.bootstrap_servers.split(","),
        topics,
        tail=tail,
        starting_offset=OFFSET_BEGINNING,
        add_config=without_bootstrap(client_config(settings, **{"auto.offset.reset": "earliest"})),
        batch_size=settings.flow.batch_size,
        raise_on_errors=False,
    )


def source_messages(flow: Dataflow, source: Source[Any], step_id: str = "kafka_in") -> Stream[KafkaSourceMessage]:
    """The messages of ``source`` (Kafka, or a test's ``TestingSource`` of ``KafkaSourceMessage``);
    Kafka's errors are logged and left out."""
    polled = op.input(step_id, flow, source)
    split = op.branch(f"{step_id}_errors", polled, lambda m: isinstance(m, KafkaSourceMessage))
    op.inspect(f"{step_id}_log_errors", split.falses, lambda _step, err: log.warning("kafka: %s", err.err))
    return split.trues


def kafka_messages(
    flow: Dataflow, settings: ConnectorSettings, topics: list[str], *, tail: bool, step_id: str = "kafka_in"
) -> Stream[KafkaSourceMessage]:
    """Messages of ``topics``; ``tail=False`` ends the stream at the end of every partition."""
    return source_messages(flow, kafka_source(settings, topics, tail=tail), step_id)
