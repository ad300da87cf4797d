"""A Kafka sink for flows that send one or more records per reading (twin states, scores, forecasts).

A :class:`~connectors.batch_sink.BatchSink` whose destination is a producer with delivery reports.

Same delivery as Bytewax's ``KafkaSink`` (at-least-once with recovery, the topics' consumers are
idempotent), same producer (:func:`connectors.kafka.clients.producer_config`), same messages, in the
same order. What differs:

* **No wait per batch.** A batch is produced (librdkafka sends it from its own threads after
  ``linger.ms``) and the producer polled once without waiting; the flush that waits for Kafka's
  acknowledgements is :meth:`MessageSink.settle`. Flows wire the sink with
  :class:`~connectors.overlap.OverlappedSink` (``background=False``, ``flows.outputs.settled``), whose
  partitions settle at the end of every epoch, *before* Bytewax can commit it, and at ``close()``: the
  Kafka offsets of an epoch are never committed ahead of its outputs' acknowledgements, as when every
  batch was flushed, without a round trip to the broker per batch. A plain ``DynamicSink`` has no
  epoch-end call, so :meth:`MessageSink.build` refuses to be one.
* **Per-message cost**: items may be :class:`OutMessage` tuples (Bytewax's ``KafkaSinkMessage`` is a
  frozen dataclass, ~1 µs to build) and the producer is not polled after every message.

A producer that stalls (Kafka answers, none of its outstanding records is acknowledged for
``kafka.stall_s``: :mod:`connectors.kafka.stall`) is purged, and the records the purge hands back
are produced again by a new producer, while the flow waits in a write or the epoch's settle; the
flow keeps running instead of waiting for ``message.timeout.ms`` (300 s) to stop it. Records that
had reached Kafka may be sent twice (the topics' consumers are idempotent), none is lost: a purge
that does not hand every record back keeps the old producer.

No silent loss: a record Kafka did not acknowledge (e.g. ``message.timeout.ms`` ran out while the
broker was away, or the broker refused it) raises :class:`UndeliveredError` from the next write that
sees its report, or at the latest from the epoch's settle. The flow stops; restarted, it resumes from
its last recovery snapshot and produces the epoch again (Bytewax's own ``KafkaSink`` ignores delivery
errors).

>>> OutMessage(b"pump-1", b"{}", "twin.state")
OutMessage(key=b'pump-1', value=b'{}', topic='twin.state', headers=None)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from confluent_kafka import Producer

from connectors.batch_sink import BatchSink
from connectors.config.contract import ConnectorSettings
from connectors.kafka.clients import producer_config
from connectors.kafka.stall import PURGED, KafkaProbe, StallWatch

log = logging.getLogger(__name__)



class OutMessage(NamedTuple):
    """One record for :class:`MessageSink` (``KafkaSinkMessage`` is accepted too)."""

    key: bytes | None
    value: bytes | None
    topic: str
    headers: list[tuple[str, bytes]] | None = None


class UndeliveredError(RuntimeError):
    """Kafka did not acknowledge some records of a batch."""


class DeliveryReports:
    """A producer that counts the records Kafka did not acknowledge (reports for failures only: no
    Python callback per acknowledged record), replaced when it stalls (``stall``)."""

    def __init__(
        self, config: dict[str, Any], stall: StallWatch | None = None, make: Callable[[dict[str, Any]], Any] = Producer
    ) -> None:
        """``make``: a producer from a config (a new one replaces a stalled one)."""
        self._config = {**config, "delivery.report.only.error": True, "on_delivery": self._delivered}
        self._make = make
        self.producer = make(self._config)
        self._stall = stall
        self._failed = 0
        self._first_error: str | None = None
        self.broken: str | None = None  # the first record Kafka did not acknowledge, ever (never reset)
        # What the producer held at the last look, and produced since: fewer now = acknowledged.
        self._held, self._produced = 0, 0
        self._purged: list[OutMessage] | None = None  # collecting a purge's records
        self._purge_lock = threading.Lock()
        self._topics: set[str] = set()  # produced to (what the stall watch asks Kafka about)
        self.restarts = 0
        self.replacements = 0  # replacements begun (a purge hands its records to the next producer)
        self.replacing = False

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        if err.code() in PURGED:
            with self._purge_lock:  # reports may be served by a fence's thread too (wait_acknowledged)
                if self._purged is not None:
                    self._purged.append(OutMessage(msg.key(), msg.value(), msg.topic(), msg.headers()))
                    return
        self._failed += 1
        if self._first_error is None:
            self._first_error = f"{err} (topic {msg.topic()})"
        if self.broken is None:
            self.broken = self._first_error

    def produce(self, batch: Sequence[Any]) -> None:
        """Produce the records; while librdkafka's queue is full, serve deliveries (and watch for a stall)."""
        produced, topic = 0, None
        for m in batch:
            if m.topic is not topic:
                topic = m.topic
                self._topics.add(topic)
            while True:
                try:
                    if m.headers:
                        self.producer.produce(m.topic, m.value, m.key, headers=m.headers)
                    else:
                        self.producer.produce(m.topic, m.value, m.key)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self.producer.poll(0.1)
                    self._produced, produced = self._produced + produced, 0
                    self.watch()
            produced += 1
        self._produced += produced

    def flush(self) -> None:
        """Wait for every record's delivery report; :class:`UndeliveredError` when some failed."""
        if self._stall is None:
            self.producer.flush()
        else:
            while self.producer.flush(1.0):
                self.watch()
        self.raise_failed()

    def wait_acknowledged(self) -> None:
        """From another thread than the one producing: return once every record produced before the call
        has its delivery report (the producer holds none, so it waits for later ones too: the flow's
        backpressure bounds them); :class:`UndeliveredError` if any record ever failed, so nothing that
        follows a lost record is written after it."""
        while self.broken is None:
            replacements = self.replacements
            # A stalled producer is replaced by the producing thread, which hands the purged records to
            # the next one: acknowledged means no record held and no replacement begun meanwhile.
            if not self.producer.flush(1.0) and not self.replacing and replacements == self.replacements:
                break
        if self.broken is not None:
            raise UndeliveredError(
                f"Kafka did not acknowledge a record ({self.broken}); the flow stops so that a restart resumes "
                "from its last snapshot and produces it again"
            )

    def poll(self) -> None:
        """Serve the delivery reports that arrived, without waiting; :class:`UndeliveredError` when some failed."""
        self.producer.poll(0)
        self.raise_failed()

    def watch(self) -> None:
        """Tell the stall watch whether the producer progressed; replace it once it is stalled."""
        if self._stall is None:
            return
        held = len(self.producer)
        if held < self._held + self._produced:
            self._stall.progressed()
        self._held, self._produced = held, 0
        stalled_s = self._stall.stalled_for(held > 0, self._topics)
        if stalled_s is not None:
            self._replace(stalled_s)

    def _replace(self, stalled_s: float, purge_wait_s: float = 5.0) -> None:
        """Purge the stalled producer and produce what the purge hands back with a new one; if the
        purge does not hand every record back within ``purge_wait_s``, keep the old producer (and
        produce what it handed back into it again)."""
        old = self.producer
        self.replacements += 1
        self.replacing = True
        try:
            self._purge_and_replace(old, stalled_s, purge_wait_s)
        finally:
            self.replacing = False

    def _purge_and_replace(self, old: Any, stalled_s: float, purge_wait_s: float) -> None:
        log.warning(
            "Kafka answers but acknowledged none of %d records in %.0f s: replacing the flow's producer",
            len(old), stalled_s,
        )  # fmt: skip
        self._purged = []
        old.purge()
        deadline = time.monotonic() + purge_wait_s
        while len(old) and time.monotonic() < deadline:
            old.poll(0.1)
        with self._purge_lock:
            purged, self._purged = self._purged, None
        if len(old):
            log.error("%d records still held by the stalled producer after the purge: keeping it", len(old))
        else:
            self.producer = self._make(self._config)
            self.restarts += 1
        self._held, self._produced = len(self.producer), 0
        self._stall.replaced()  # type: ignore[union-attr]  # (only called with a watch)
        self.produce(purged)

    def raise_failed(self) -> None:
        """:class:`UndeliveredError` when some record's delivery failed since the last call."""
        if self._failed:
            failed, first = self._failed, self._first_error
            self._failed, self._first_error = 0, None
            raise UndeliveredError(
                f"Kafka did not acknowledge {failed} record(s), first: {first}; the flow stops so that a "
                "restart resumes from its last snapshot and produces them again"
            )


class MessageSink(BatchSink[Any, DeliveryReports]):
    """Producing :class:`OutMessage` (or ``KafkaSinkMessage``) items, a producer per partition; settled
    (flushed) at each epoch's end by :class:`~connectors.overlap.OverlappedSink`."""

    what = "messages"
    written_as = "produced"  # acknowledged by the epoch's settle, or the flow stopped with what was not

    def __init__(self, config: dict[str, Any], stall: Callable[[], StallWatch] | None = None) -> None:
        """``config``: the producer's; ``stall``: makes each partition's stall watch (none: a stalled
        producer waits for ``message.timeout.ms``)."""
        super().__init__()
        self._config = config
        self._stall = stall

    @classmethod
    def of(cls, settings: ConnectorSettings) -> MessageSink:
        """The flows' sink: the producer of :func:`~connectors.kafka.clients.producer_config`, a
        stalled one replaced after ``kafka.stall_s``."""
        probe = KafkaProbe(settings)
        return cls(producer_config(settings), stall=lambda: StallWatch(settings.kafka.stall_s, probe))

    def connect(self) -> DeliveryReports:
        return DeliveryReports(self._config, self._stall() if self._stall else None)

    def write_to(self, destination: DeliveryReports, batch: Sequence[Any]) -> int:
        destination.produce(batch)
        destination.poll()
        destination.watch()
        return len(batch)

    def settle(self, destination: DeliveryReports) -> None:
        destination.flush()

    def acknowledged(self, destination: DeliveryReports) -> None:
        destination.wait_acknowledged()

    def serve(self, destination: DeliveryReports) -> None:
        destination.poll()
        destination.watch()

    def disconnect(self, destination: DeliveryReports) -> None:
        destination.flush()

    def route_key(self, record: Any) -> bytes:
        return record.key or b""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        raise TypeError(
            "MessageSink flushes at the end of each epoch: wire it with "
            "connectors.overlap.OverlappedSink(sink, background=False) (flows.outputs.settled)"
        )
