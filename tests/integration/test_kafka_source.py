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
from connectors.kafka.source import kafka_messages, kafka_source
from operators.ml.path_pauses import PathPauses
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


def test_a_lingering_partition_never_waits_in_a_poll_yet_reads_everything_and_sees_its_broker(settings):
    """With a poll interval (tailing), each poll takes what librdkafka has queued without waiting;
    the records still all arrive, and the statistics (served by those polls) still show the leader
    reachable, so the partition reports heartbeats of its path."""
    topic = settings.topics.raw
    _recreate(settings, topic)
    produce(settings, [(b"k", f"r-{i}".encode()) for i in range(50)], topic=topic)
    path = PathPauses(time.time())
    source = kafka_source(settings.model_copy(deep=True), [topic], tail=True, path=path)
    part = source.build_part("kafka_in", f"0-{topic}", None)
    try:
        assert part._part._shared._timeout == 0  # its polls take what is fetched, never wait
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(got) < 50 or not part._part.reachable):
            got += [m.value for m in part.next_batch()]
            time.sleep(0.01)
        assert got == [f"r-{i}".encode() for i in range(50)]
        assert part._part.reachable
        part.next_batch()
        assert path.longest_pause(time.time(), time.time()) < 1  # heartbeats: the path is healthy now
    finally:
        part.close()


def _recreate_with(settings, topics: dict[str, int]) -> None:
    admin = AdminClient(client_config(settings))
    for topic in topics:
        admin.delete_topics([topic])[topic].result()
    deadline = time.monotonic() + 30
    left = dict(topics)
    while left and time.monotonic() < deadline:  # deletion completes asynchronously
        for topic, parts in list(left.items()):
            try:
                admin.create_topics([NewTopic(topic, parts, 1)])[topic].result()
                del left[topic]
            except Exception:
                time.sleep(0.5)
    assert not left, f"could not recreate {left}"


def test_a_workers_partitions_share_one_consumer_and_each_reads_its_own_records_in_order(settings):
    """Every partition a worker reads of a source goes through one librdkafka consumer (not one per
    partition, as Bytewax's source has it): each partition still gets exactly its records, in order,
    its snapshot is the next offset, a source resumed from those snapshots reads only what came
    after, and with tail=False every partition ends."""
    raw, acks = settings.topics.raw, settings.topics.dlq  # (this test's own topics)
    _recreate_with(settings, {raw: 3, acks: 2})
    sent = {raw: [(f"k{i}".encode(), f"raw-{i}".encode()) for i in range(300)],
            acks: [(f"k{i}".encode(), f"ack-{i}".encode()) for i in range(40)]}  # fmt: skip
    for topic, records in sent.items():
        produce(settings, records, topic=topic)

    def read(resume: dict[str, int] | None) -> tuple[dict[str, list[bytes]], dict[str, int]]:
        source = kafka_source(settings.model_copy(deep=True), [raw, acks], tail=False)
        names = source.list_parts()
        parts = {name: source.build_part("kafka_in", name, (resume or {}).get(name)) for name in names}
        assert len({id(p._part._shared) for p in parts.values()}) == 1  # one consumer for them all
        got: dict[str, list] = {name: [] for name in names}
        live = dict(parts)
        deadline = time.monotonic() + 30
        while live and time.monotonic() < deadline:
            for name, part in list(live.items()):
                try:
                    got[name] += part.next_batch()
                except StopIteration:
                    del live[name]
        assert not live, f"partitions did not end: {sorted(live)}"
        snapshots = {name: part.snapshot() for name, part in parts.items()}
        for part in parts.values():
            part.close()
        for name, msgs in got.items():
            index, topic = name.split("-", 1)
            assert all(m.topic == topic and m.partition == int(index) for m in msgs)
            assert [m.offset for m in msgs] == sorted(m.offset for m in msgs)  # in order, no repeats
        return {name: [m.value for m in msgs] for name, msgs in got.items()}, snapshots

    first, snapshots = read(None)
    for topic, records in sent.items():
        values = [v for name, vs in first.items() if name.split("-", 1)[1] == topic for v in vs]
        assert sorted(values) == sorted(v for _, v in records)
    assert sum(snapshots.values()) == 340  # each partition's next offset: its record count
    produce(settings, [(b"k1", b"raw-late")], topic=raw)
    again, _ = read(snapshots)
    assert [v for vs in again.values() for v in vs] == [b"raw-late"]
