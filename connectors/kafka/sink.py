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

No silent loss: a record Kafka did not acknowledge (e.g. ``message.timeout.ms`` ran out while the
broker was away, or the broker refused it) raises :class:`UndeliveredError` from the next write that
sees its report, or at the latest from the epoch's settle. The flow stops; restarted, it resumes from
its last recovery snapshot and produces the epoch again (Bytewax's own ``KafkaSink`` ignores delivery
errors).

>>> OutMessage(b"pump-1", b"{}", "twin.state")
OutMessage(key=b'pump-1', value=b'{}', topic='twin.state', headers=None)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from confluent_kafka import Producer

from connectors.batch_sink import BatchSink


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
    Python callback per acknowledged record)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.producer = Producer({**config, "delivery.report.only.error": True, "on_delivery": self._delivered})
        self._failed = 0
        self._first_error: str | None = None

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed += 1
            if self._first_error is None:
                self._first_error = f"{err} (topic {msg.topic()})"

    def flush(self) -> None:
        """Wait for every record's delivery report; :class:`UndeliveredError` when some failed."""
        self.producer.flush()
        self.raise_failed()

    def poll(self) -> None:
        """Serve the delivery reports that arrived, without waiting; :class:`UndeliveredError` when some failed."""
        self.producer.poll(0)
        self.raise_failed()

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
    written_as = "acknowledged by Kafka"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self._config = config

    def connect(self) -> DeliveryReports:
        return DeliveryReports(self._config)

    def write_to(self, destination: DeliveryReports, batch: Sequence[Any]) -> int:
        producer = destination.producer
        for m in batch:
            while True:
                try:
                    if m.headers:
                        producer.produce(m.topic, m.value, m.key, headers=m.headers)
                    else:
                        producer.produce(m.topic, m.value, m.key)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
        destination.poll()
        return len(batch)

    def settle(self, destination: DeliveryReports) -> None:
        destination.flush()

    def disconnect(self, destination: DeliveryReports) -> None:
        destination.flush()

    def route_key(self, record: Any) -> bytes:
        return record.key or b""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        raise TypeError(
            "MessageSink flushes at the end of each epoch: wire it with "
            "connectors.overlap.OverlappedSink(sink, background=False) (flows.outputs.settled)"
        )
