"""The Kafka input every flow uses: topics from the beginning (or the recovery snapshot).

Offsets live in Bytewax's recovery snapshots, not in a consumer group, so a restarted flow
resumes where its last snapshot ended (sinks are idempotent). Kafka errors are logged and the
flow keeps running (librdkafka reconnects by itself); they never crash it.

If a partition's position becomes invalid (offset out of range: a broker restart that briefly
reports a shorter log, or a snapshot older than the topic's retention), the consumer restarts at
the *earliest* retained offset, never at the end: re-reading is harmless (idempotent sinks),
skipping is silent loss. librdkafka's default would be ``latest``.

A worker reads all its partitions of a source through one librdkafka consumer
(:class:`_SharedConsumer`; Bytewax's own source makes one per partition), each partition with its
own offset in the snapshots, as Bytewax's.

On a stop request (:mod:`connectors.stopping`) the source ends its input at the next poll
(:class:`_StoppablePartition`): the epoch in progress is committed at once with everything read
so far, and the dataflow completes (:mod:`twinflow.flow_stop`). A forced stop raises Bytewax's
``AbortExecution`` from ``next_batch`` instead (the exception Bytewax treats as a clean end,
where any other one, KeyboardInterrupt included, is a Rust panic).

The source also tells whether its path works (:class:`operators.ml.path_pauses.PathPauses`, given
as ``path``): after each poll of a partition whose leader broker librdkafka's statistics (every
second) show connected and answering, the partition reports a heartbeat. A worker held up (a slow
sink, stopped) polls nothing and the broker unreachable answers nothing: both are pauses of the
path, while a poll that finds no new message is a healthy one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import AbortExecution, Source, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient

from connectors.cluster import this_worker
from connectors.config.contract import ConnectorSettings
from connectors.kafka.clients import client_config, metadata, without_bootstrap
from connectors.stopping import STOP
from operators.ml.path_pauses import PathPauses

log = logging.getLogger(__name__)

# A connected broker answers the consumer's fetch at least every fetch.wait.max.ms (0.5 s) even when
# there is nothing to read; one silent for longer than this is hung or cut off.
RX_IDLE_MAX_S = 5.0
STATS_INTERVAL_MS = 1000  # Bytewax's statistics.interval.ms: how often librdkafka reports the broker


def partition_stats(stats: dict[str, Any], topic: str, partition: int) -> dict[str, Any]:
    """One partition's part of librdkafka's statistics (empty when they do not list it)."""
    return stats.get("topics", {}).get(topic, {}).get("partitions", {}).get(str(partition), {})


def leader_reachable(stats: dict[str, Any], topic: str, partition: int) -> bool:
    """Whether librdkafka's statistics (``stats_cb``) show ``topic``/``partition``'s leader broker
    connected (state ``UP``) and answering (something received within :data:`RX_IDLE_MAX_S`)."""
    leader = partition_stats(stats, topic, partition).get("leader", -1)
    if leader < 0:
        return False
    for broker in stats.get("brokers", {}).values():
        if broker.get("nodeid") == leader:
            return broker.get("state") == "UP" and 0 <= broker.get("rxidle", -1) <= RX_IDLE_MAX_S * 1e6
    return False


_new = object.__new__


def source_message(msg: Message, topic: str, partition: int) -> KafkaSourceMessage:
    """Bytewax's ``KafkaSourceMessage`` of a consumed message (``topic`` and ``partition``: the
    message's, read already), built as pickle restores one, its fields put into its ``__dict__``: the
    frozen dataclass's ``__init__`` sets each of its eight fields through ``object.__setattr__``
    (≈ 1.3 µs a message, against ≈ 0.3). The same object as the constructor's.

    >>> m = Message(topic="t", partition=1, offset=5, key=b"k", value=b"v", timestamp=(1, 123))
    >>> source_message(m, "t", 1) == KafkaSourceMessage(b"k", b"v", "t", [], None, 5, 1, (1, 123))
    True
    """
    out = _new(KafkaSourceMessage)
    fields = out.__dict__
    fields["key"] = msg.key()
    fields["value"] = msg.value()
    fields["topic"] = topic
    fields["headers"] = msg.headers() or []
    fields["latency"] = msg.latency()
    fields["offset"] = msg.offset()
    fields["partition"] = partition
    fields["timestamp"] = msg.timestamp()
    return out


class _SharedConsumer:
    """One librdkafka consumer for every partition of a source that one worker reads.

    Bytewax's ``KafkaSource`` makes a consumer per partition: the pipeline reads six topics (21
    partitions), the alerts flow seven (25), each partition with its own librdkafka threads, its own
    fetch requests to the broker (answered as soon as anything arrives) and its own poll per tick.
    Here the worker's partitions share one consumer (one fetch per broker for all of them): a
    partition whose queue is empty takes what the consumer has fetched (``consume`` never waits when
    ``no_wait``; 1 ms otherwise, as Bytewax's), and each message goes to its partition's queue, in
    order. At most ``4 × batch_size`` messages wait in the queues (a partition polled meanwhile finds
    nothing new until the others have taken theirs)."""

    def __init__(self, config: dict[str, Any], batch_size: int, no_wait: bool, raise_on_errors: bool) -> None:
        self._consumer = Consumer({**config, "stats_cb": self._stats})
        self._batch_size = batch_size
        self._timeout = 0 if no_wait else 0.001
        self._raise_on_errors = raise_on_errors
        self._parts: dict[tuple[str, int], _SharedPartition] = {}
        self._ended: set[tuple[str, int]] = set()  # partitions whose end was reached (tail=False)
        self._waiting = 0
        self.open = True  # until its last partition is released

    def assign(self, part: _SharedPartition) -> None:
        self._parts[(part.topic, part.index)] = part
        self._consumer.incremental_assign([TopicPartition(part.topic, part.index, part.offset)])

    def release(self, part: _SharedPartition) -> None:
        """Stop reading ``part``; the consumer closes with the worker's last partition."""
        if self._parts.pop((part.topic, part.index), None) is None:
            return
        self._waiting -= len(part.queue)
        if self._parts:
            self._consumer.incremental_unassign([TopicPartition(part.topic, part.index)])
        else:
            self.open = False
            self._consumer.close()

    def take(self, part: _SharedPartition) -> list[KafkaSourceMessage] | None:
        """Up to a batch of the partition's messages in order; None once it has none left and its
        end was reached (tail=False)."""
        queue, key = part.queue, (part.topic, part.index)
        if not queue:
            if key in self._ended:
                return None
            if self._waiting < 4 * self._batch_size:
                self._fetched()
        n = min(len(queue), self._batch_size)
        self._waiting -= n
        return [queue.popleft() for _ in range(n)]

    def _fetched(self) -> None:
        """What the consumer has fetched, into the partitions' queues; errors logged (or raised)."""
        for msg in self._consumer.consume(self._batch_size, self._timeout):
            error = msg.error()
            key = (msg.topic(), msg.partition())
            if error is None:
                part = self._parts.get(key)
                if part is not None:
                    part.queue.append(source_message(msg, key[0], key[1]))
                    self._waiting += 1
            elif error.code() == ConfluentKafkaError._PARTITION_EOF:
                self._ended.add(key)
            elif self._raise_on_errors:
                raise RuntimeError(f"error consuming from Kafka topic {key[0]!r}: {error}")
            else:
                log.warning("kafka: %s", error)

    def _stats(self, json_stats: str) -> None:
        """librdkafka's statistics (every second): each partition's leader reachable, and its lag."""
        stats = orjson.loads(json_stats)
        for (topic, index), part in list(self._parts.items()):
            part.reachable = leader_reachable(stats, topic, index)
            end = partition_stats(stats, topic, index).get("ls_offset")
            if end is not None and part.offset > 0:
                BYTEWAX_CONSUMER_LAG_GAUGE.labels(step_id=part.step_id, topic=topic, partition=index).set(
                    end - part.offset
                )


class _SharedPartition:
    """One Kafka partition read through its worker's :class:`_SharedConsumer`, as Bytewax's own
    partition reads it: from ``offset`` (the recovery snapshot's, else the start), its messages as
    ``KafkaSourceMessage``, ``StopIteration`` after its end (tail=False), the next offset as its snapshot."""

    def __init__(self, shared: _SharedConsumer, step_id: str, topic: str, index: int, offset: int) -> None:
        self.step_id, self.topic, self.index, self.offset = step_id, topic, index, offset
        self.reachable = False  # not until the first statistics (one second after the start) say so
        self.queue: deque[KafkaSourceMessage] = deque()  # fetched, not yet taken
        self._shared = shared
        shared.assign(self)

    def next_batch(self) -> list[KafkaSourceMessage]:
        batch = self._shared.take(self)
        if batch is None:
            raise StopIteration
        if batch:
            self.offset = batch[-1].offset + 1  # resume from the next message, not this one
        return batch

    def snapshot(self) -> int:
        return self.offset

    def close(self) -> None:
        self._shared.release(self)


def next_tick(now: float, interval_s: float) -> float:
    """The first multiple of ``interval_s`` after ``now`` (seconds since the epoch): every partition
    of a worker that lingers wakes at the same tick, so one activation polls them all.

    >>> next_tick(100.013, 0.02), next_tick(100.02, 0.02), next_tick(100.0399, 0.02)
    (100.02, 100.04, 100.04)
    """
    step_us = round(interval_s * 1e6)  # whole microseconds: 100.02 // 0.02 is 5000.0 in floats
    return (round(now * 1e6) // step_us + 1) * step_us / 1e6


class _StoppablePartition(StatefulSourcePartition[Any, Any]):
    """A Kafka partition that ends at its next poll once a stop is requested; each poll of a
    reachable broker is a heartbeat of ``path``.

    A stop ends the input as the end of a partition does (``StopIteration``): Bytewax then
    snapshots the partition at its next offset and ends its epoch at once, without waiting for
    ``flow.snapshot_interval_s`` (Bytewax 0.21 ``src/inputs.rs``), the steps finish what they
    hold and the last epoch is committed; a restart resumes from that offset. Stateful steps
    tell this end from the end of the data by :data:`~connectors.stopping.STOP` (``on_eof``).
    ``STOP.abort_sources`` (a forced stop before the end) ends the run with ``AbortExecution``.

    ``linger_s`` > 0: after a poll that did not fill a batch (``full`` messages: it is caught up),
    the next poll waits for the next tick of ``linger_s`` (:func:`next_tick`), so a tailing flow
    handles the readings of ``linger_s`` per batch instead of the few each immediate poll finds
    (every step costs per batch, every keyed step per key and batch). A full batch is followed
    by the next poll at once (a backlog drains at full speed)."""

    def __init__(
        self, part: _SharedPartition, name: str, path: PathPauses | None = None, linger_s: float = 0.0, full: int = 1
    ) -> None:
        self._part = part
        self._name = name
        self._path = path
        self._linger_s = linger_s
        self._full = full
        self._awake: datetime | None = None
        if path is not None:
            path.joined(name)

    def next_batch(self) -> list[Any]:
        if STOP.abort_sources.is_set():
            STOP.aborted = True
            raise AbortExecution("stop requested")
        try:
            if STOP.requested.is_set():  # the end of this run's input, at once (see the class doc)
                raise StopIteration
            batch = self._part.next_batch()
        except StopIteration:  # or the end of the partition (tail=False)
            if self._path is not None:
                self._path.left(self._name)
            raise
        now = time.time()
        if self._path is not None and self._part.reachable:
            self._path.heartbeat(self._name, now)
        if self._linger_s > 0 and len(batch) < self._full:
            self._awake = datetime.fromtimestamp(next_tick(now, self._linger_s), UTC)
        else:
            self._awake = None
        return batch

    def next_awake(self) -> datetime | None:
        if STOP.requested.is_set():  # nothing to read: look at the stop flags 20 times a second
            return datetime.now(UTC) + timedelta(milliseconds=50)
        return self._awake

    def snapshot(self) -> Any:
        return self._part.snapshot()

    def close(self) -> None:
        if self._path is not None:
            self._path.left(self._name)
        self._part.close()


class MissingTopics(RuntimeError):
    """Input topics of a flow that the broker does not have (``twinflow kafka init`` creates them)."""


def missing_topics(sources: list[StoppableKafkaSource]) -> list[str]:
    """The topics of ``sources`` the broker does not have, from one metadata request per broker list.

    Checked by :func:`twinflow.runner.run_in_process` before Bytewax builds the flow: Bytewax lists
    the partitions without a timeout (a broker that does not answer would block a stop for good) and
    ends the run with a panic on a missing topic. Here the wait for the broker is as long as Bytewax's,
    but a stop ends it (:class:`~connectors.stopping.Stopped`)."""
    known: dict[str, set[str]] = {}
    missing: list[str] = []
    for src in sources:
        brokers = ",".join(src._brokers)
        if brokers not in known:
            admin = AdminClient({"bootstrap.servers": brokers, **src._add_config})
            known[brokers] = set(metadata(admin, math.inf).topics)
        missing += [t for t in src._topics if t not in known[brokers] and t not in missing]
    return missing


class StoppableKafkaSource(KafkaSource):
    """Bytewax's ``KafkaSource`` whose partitions obey :data:`connectors.stopping.STOP` and report
    heartbeats to ``path``, spread over the workers of a cluster topic by topic (:meth:`list_parts`)."""

    def __init__(
        self,
        brokers: list[str],
        topics: list[str],
        path: PathPauses | None = None,
        linger_s: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(brokers, topics, **options)
        self.topics = list(topics)  # what it reads (its recovery state is keyed <partition>-<topic>)
        self.path = path
        self.linger_s = linger_s  # see _StoppablePartition
        self._shared: dict[tuple[str, int], _SharedConsumer] = {}  # per (step, worker thread)

    def list_parts(self) -> list[str]:
        """Every partition of the topics; on a worker of a cluster (:func:`this_worker`) only its own.

        Bytewax gives each partition to one of the workers that list it, round robin over all of
        them sorted by name (``0-telemetry.raw``, ``0-twin.acks``, …, ``1-telemetry.raw``, …): with
        the pipeline's six topics and two workers, every ``telemetry.raw`` partition went to worker
        0, which decoded all telemetry while worker 1 waited for its share. Here partition ``i`` of
        the ``t``-th topic is listed only by worker ``(i + t) % workers`` (:func:`owner`), so each
        worker reads its share of every topic. The same partitions, the same recovery keys: a
        snapshot resumes on the worker that now lists its partition."""
        parts = super().list_parts()  # (the broker answered before the run: missing_topics)
        worker = this_worker()
        if worker is None or worker.count == 1:
            return parts
        return [part for part in parts if worker.owns(owner(part, self.topics))]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _StoppablePartition:
        # Bytewax 0.21.1's KafkaSource.build_part, the partition read through the worker's shared consumer.
        idx, topic = for_part.split("-", 1)
        linger_s = self.linger_s if self._tail else 0.0
        if topic not in self._topics:
            raise ValueError(f"cannot resume Kafka partition {for_part!r}: not one of the topics {self._topics}")
        worker = (step_id, threading.get_ident())  # a worker builds its partitions in its own thread
        shared = self._shared.get(worker)
        if shared is None or not shared.open:
            config = {
                "group.id": "BYTEWAX_IGNORED",  # offsets live in the recovery snapshots
                "enable.auto.commit": "false",
                "bootstrap.servers": ",".join(self._brokers),
                "enable.partition.eof": str(not self._tail),
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "auto.offset.reset": "earliest",  # see the module doc
                **self._add_config,
            }
            shared = self._shared[worker] = _SharedConsumer(
                config, self._batch_size, no_wait=linger_s > 0, raise_on_errors=self._raise_on_errors
            )
        offset = self._starting_offset if resume_state is None else resume_state
        part = _SharedPartition(shared, step_id, topic, int(idx), offset)
        return _StoppablePartition(part, for_part, self.path, linger_s, self._batch_size)


def owner(part: str, topics: list[str]) -> int:
    """Where partition ``part`` (``<index>-<topic>``) goes in the round robin over the workers:
    its index, shifted by its topic's place in ``topics`` (the single-partition topics spread too).

    >>> [owner(p, ["raw", "acks"]) % 2 for p in ("0-raw", "1-raw", "2-raw", "3-raw", "0-acks")]
    [0, 1, 0, 1, 1]
    """
    idx, topic = part.split("-", 1)
    return int(idx) + topics.index(topic)


def kafka_source(
    settings: ConnectorSettings,
    topics: list[str],
    *,
    tail: bool,
    path: PathPauses | None = None,
    poll_interval_ms: float | None = None,
) -> StoppableKafkaSource:
    """The flows' Kafka source over ``topics``; ``tail=False`` ends at the end of every partition;
    ``path``: told of each healthy poll (:class:`_StoppablePartition`). A tailing source that is
    caught up polls every ``poll_interval_ms`` (default ``flow.poll_interval_ms``)."""
    interval_ms = settings.flow.poll_interval_ms if poll_interval_ms is None else poll_interval_ms
    return StoppableKafkaSource(
        settings.kafka.bootstrap_servers.split(","),
        topics,
        path,
        interval_ms / 1000 if tail else 0.0,
        tail=tail,
        starting_offset=OFFSET_BEGINNING,
        add_config=without_bootstrap(client_config(settings)),  # also the partition listing's admin client
        batch_size=settings.flow.batch_size,
        raise_on_errors=False,
    )


def source_messages(flow: Dataflow, source: Source[Any], step_id: str = "kafka_in") -> Stream[KafkaSourceMessage]:
    """The messages of ``source`` (Kafka, or a test's ``TestingSource`` of ``KafkaSourceMessage``);
    Kafka's errors are logged and left out."""
    polled = op.input(step_id, flow, source)
    return op.flat_map_batch(f"{step_id}_errors", polled, messages_only)


def messages_only(batch: list[Any]) -> list[KafkaSourceMessage]:
    """The messages of a polled batch, in order; Kafka's errors are logged and left out (one call per
    batch: a per-item filter costs a Python call per message).

    >>> from bytewax.connectors.kafka import KafkaError
    >>> from confluent_kafka import KafkaError as Err
    >>> m = KafkaSourceMessage(b"p1", b"{}", "t")
    >>> messages_only([m, KafkaError(Err(Err._ALL_BROKERS_DOWN), m), m]) == [m, m]
    True
    """
    messages = [m for m in batch if m.__class__ is KafkaSourceMessage or isinstance(m, KafkaSourceMessage)]
    if len(messages) < len(batch):
        for err in batch:
            if not isinstance(err, KafkaSourceMessage):
                log.warning("kafka: %s", err.err)
    return messages


def kafka_messages(
    flow: Dataflow, settings: ConnectorSettings, topics: list[str], *, tail: bool, step_id: str = "kafka_in"
) -> Stream[KafkaSourceMessage]:
    """Messages of ``topics``; ``tail=False`` ends the stream at the end of every partition."""
    return source_messages(flow, kafka_source(settings, topics, tail=tail), step_id)
