"""The flows' Kafka input never skips to the end of a partition when its position is invalid."""

from __future__ import annotations

import time
from datetime import timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, run_main
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka.clients import client_config
from connectors.kafka.source import kafka_messages
from tests.kafka_helpers import produce
from twinflow.runner import ensure_recovery_dir

pytestmark = pytest.mark.integration


def _recreate(settings, topic: str) -> None:
    admin = AdminClient(client_config(settings))
    admin.delete_topics([topic])[topic].result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # deletion completes asynchronously
        try:
            admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
            return
        except Exception:
            time.sleep(0.5)
    raise AssertionError(f"could not recreate {topic}")


def test_a_resumed_offset_past_the_end_restarts_at_the_earliest_record(settings, tmp_path):
    """A snapshot holds offset 10; the topic is recreated with 4 records (offsets 0–3). The
    input must read those 4 (librdkafka's default ``latest`` would silently read nothing)."""
    topic = settings.topics.raw
    recovery = ensure_recovery_dir(tmp_path / "recovery")

    def read() -> list[bytes]:
        out: list = []
        flow = Dataflow("kafka-source-test")
        msgs = kafka_messages(flow, settings, [topic], tail=False)
        op.output("out", op.map("value", msgs, lambda m: m.value), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(recovery)))
        return out

    _recreate(settings, topic)  # one partition, so every record has a known offset
    produce(settings, [(b"k", f"first-{i}".encode()) for i in range(10)], topic=topic)
    assert len(read()) == 10
    _recreate(settings, topic)
    produce(settings, [(b"k", f"second-{i}".encode()) for i in range(4)], topic=topic)
    assert read() == [f"second-{i}".encode() for i in range(4)]
