"""The Kafka input every flow uses: topics from the beginning (or the recovery snapshot).

Offsets live in Bytewax's recovery snapshots, not in a consumer group, so a restarted flow
resumes where its last snapshot ended (sinks are idempotent). Kafka errors are logged and the
flow keeps running (librdkafka reconnects by itself); they never crash it.

If a partition's position becomes invalid (offset out of range: a broker restart that briefly
reports a shorter log, or a snapshot older than the topic's retention), the consumer restarts at
the *earliest* retained offset, never at the end: re-reading is harmless (idempotent sinks),
skipping is silent loss. librdkafka's default would be ``latest``.
"""

from __future__ import annotations

import logging

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import OFFSET_BEGINNING

from connectors.kafka.clients import client_config, without_bootstrap
from twinflow.settings import Settings

log = logging.getLogger(__name__)


def kafka_messages(
    flow: Dataflow, settings: Settings, topics: list[str], *, tail: bool, step_id: str = "kafka_in"
) -> Stream[KafkaSourceMessage]:
    """Messages of ``topics``; ``tail=False`` ends the stream at the end of every partition."""
    polled = op.input(
        step_id,
        flow,
        KafkaSource(
            settings.kafka.bootstrap_servers.split(","),
            topics,
            tail=tail,
            starting_offset=OFFSET_BEGINNING,
            add_config=without_bootstrap(client_config(settings, **{"auto.offset.reset": "earliest"})),
            batch_size=settings.flow.batch_size,
            raise_on_errors=False,
        ),
    )
    split = op.branch(f"{step_id}_errors", polled, lambda m: isinstance(m, KafkaSourceMessage))
    op.inspect(f"{step_id}_log_errors", split.falses, lambda _step, err: log.warning("kafka: %s", err.err))
    return split.trues
