"""The flows' Kafka sink on the real broker: an epoch is committed only after Kafka acknowledged its
records (the sink flushes at the epoch's end, not per batch)."""

from __future__ import annotations

import os
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka.clients import client_config, producer_config
from connectors.kafka.sink import MessageSink, OutMessage, UndeliveredError
from connectors.kafka.stall import KafkaProbe, StallWatch
from connectors.overlap import OverlappedSink
from flows.outputs import output, settled
from tests.kafka_helpers import limit_message_bytes, read_topic
from twinflow.runner import ensure_recovery_dir

pytestmark = pytest.mark.integration


class _PacedPartition(StatefulSourcePartition[Any, int]):
    def __init__(self, batches: list[list[Any]], at: int, pause: timedelta) -> None:
        self.batches, self.at, self.pause = batches, at, pause
        self.due = datetime.now(UTC)

    def next_batch(self) -> list[Any]:
        if self.at >= len(self.batches):
            raise StopIteration
        self.at += 1
        self.due = datetime.now(UTC) + self.pause
        return self.batches[self.at - 1]

    def next_awake(self) -> datetime:
        return self.due

    def snapshot(self) -> int:
        return self.at  # a resumed run starts at the first batch of the epoch not committed


class PacedSource(FixedPartitionedSource[Any, int]):
    """``batches`` one after another, ``pause`` apart (epochs end in between); resumable."""

    def __init__(self, batches: list[list[Any]], pause: timedelta) -> None:
        self.batches, self.pause = batches, pause

    def list_parts(self) -> list[str]:
        return ["0"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PacedPartition:
        return _PacedPartition(self.batches, resume_state or 0, self.pause)


def test_a_record_kafka_refuses_stops_the_flow_before_its_epoch_is_committed(stack_settings, tmp_path, unique):
    topic = f"test.sink.{unique}"
    admin = AdminClient(client_config(stack_settings))
    admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "2048"})])[topic].result(30)
    big = os.urandom(8000)  # incompressible: larger than the topic takes
    small = [OutMessage(b"k", f"small-{i}".encode(), topic) for i in range(3)]
    # An epoch of small records, one with the refused record, one more write after a pause: without
    # the flush at the epoch's end, its epoch would be committed before the next write sees the error.
    batches = [small, [OutMessage(b"k", big, topic)], [OutMessage(b"k", b"after", topic)]]
    recovery = ensure_recovery_dir(tmp_path / "recovery")

    def run() -> None:
        flow = Dataflow("kafka-sink-test")
        sink = settled(stack_settings, MessageSink.of(stack_settings))
        output("out", op.input("in", flow, PacedSource(batches, timedelta(seconds=3))), sink)
        run_main(flow, epoch_interval=timedelta(milliseconds=300), recovery_config=RecoveryConfig(str(recovery)))

    try:
        with pytest.raises(Exception) as stopped:  # Bytewax's error, caused by the sink's
            run()
        assert "did not acknowledge" in "".join(traceback.format_exception(stopped.value))

        # Kafka takes the record now: the restarted flow resumes from before the epoch that failed
        # (were it committed, the resumed input would be at its end and the record lost).
        limit_message_bytes(stack_settings, topic, 1_048_588)
        run()
        values = [r.value for r in read_topic(stack_settings, topic)]
        assert big in values
        assert {m.value for m in small} | {b"after"} <= set(values)
    finally:
        admin.delete_topics([topic])[topic].result(30)


def test_the_stall_watch_asks_kafka_about_the_records_topics(stack_settings, unique):
    """Kafka answering is not enough to call a producer stalled: a record for a topic that does not
    exist is held by a working producer until message.timeout.ms fails it (the flow stops with the
    reason), so the sink must not replace its producer again and again meanwhile."""
    topic, missing = f"test.sink.{unique}", f"test.sink.missing.{unique}"
    admin = AdminClient(client_config(stack_settings))
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    probe = KafkaProbe(stack_settings)
    try:
        assert probe({topic}) and probe(set())
        assert not probe({topic, missing})

        config = {**producer_config(stack_settings), "message.timeout.ms": 6000}
        sink = MessageSink(config, stall=lambda: StallWatch(0.6, probe))
        part = OverlappedSink(sink, background=False).build_part("out", "00", None)
        part.write_batch([[OutMessage(b"k", b"kept", missing)]])
        with pytest.raises(UndeliveredError, match="missing"):
            part.snapshot()  # the epoch's settle: waits for message.timeout.ms, no replacement
        assert part.writer.destination.restarts == 0
        part.close()
    finally:
        admin.delete_topics([topic])[topic].result(30)
