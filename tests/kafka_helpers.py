"""Small Kafka helpers for tests: produce, read a topic to its end, run a flow to the end."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from connectors.kafka.clients import client_config, producer_config
from twinflow.settings import Settings


def produce(
    settings: Settings,
    messages: list[tuple[bytes | None, bytes | None]] | list[tuple[bytes | None, bytes | None, list]],
    topic: str | None = None,
    **config,
) -> list[tuple[int, int]]:
    """Produce (key, value[, headers]) in order, wait until all are acknowledged; returns (partition, offset)s."""
    p = Producer(producer_config(settings, **config))
    where: list[tuple[int, int] | None] = [None] * len(messages)

    def delivered(i: int):
        def cb(err, msg) -> None:
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        return cb

    for i, (key, value, *headers) in enumerate(messages):
        p.produce(
            topic or settings.topics.raw,
            key=key,
            value=value,
            headers=headers[0] if headers else None,
            on_delivery=delivered(i),
        )
        p.poll(0)
    assert p.flush(30) == 0, "not every test message was acknowledged by Kafka"
    assert all(w is not None for w in where)
    return where  # type: ignore[return-value]


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int


def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> list[Record]:
    """Every record currently in ``topic`` (all partitions), read until end of partition."""
    c = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"test-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    md = c.list_topics(topic, timeout=timeout)
    parts = list(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done: set[int] = set()
    out: list[Record] = []
    import time

    deadline = time.monotonic() + timeout
    while len(done) < len(parts) and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                done.add(msg.partition())
                continue
            raise RuntimeError(msg.error())
        out.append(Record(msg.key(), msg.value(), dict(msg.headers() or []), msg.partition(), msg.offset()))
    c.close()
    assert len(done) == len(parts), f"did not reach the end of {topic} within {timeout} s"
    return out


def run_flow_to_end(settings: Settings) -> None:
    """Run the telemetry flow in-process over everything in the raw topic, then return."""
    from bytewax.testing import run_main

    from flows.telemetry import build_flow

    run_main(build_flow(settings, tail=False))


def limit_message_bytes(s: Settings, topic: str, limit: int) -> None:
    """Kafka refuses records larger than ``limit`` on ``topic`` (a delivery error, not a retry)."""
    entry = ConfigEntry("max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient(client_config(s))  # held until the answer comes
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result(30)
