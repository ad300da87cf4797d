"""The base of every sink: Bytewax plumbing, batching and counting; a concrete sink writes one batch.

As in Quix Streams (``BaseSink → BatchingSink``, one ``write(batch)`` per destination), a concrete
sink says only how to reach its destination (:meth:`BatchSink.connect`: a database session, a Kafka
producer; one per writer) and how to write one batch to it
(:meth:`BatchSink.write_to`). The base owns the rest:

* **Bytewax**: a :class:`~bytewax.outputs.DynamicSink` whose partition (one per worker) has its own
  destination. Items may be records or lists of records (a flow step that emits one list per twin
  and batch); lists are flattened, order kept.
* **Batching**: each Bytewax batch is written in batches of at most ``batch_size`` records
  (``None``: the whole batch in one), in order; a batch that raises stops the flow.
* **Counting**: records received and what the destination reports written, logged at close.

Retries, idempotency and delivery reports belong to the destination:
:class:`~connectors.postgres.sink.PostgresSink` (a transaction retried on a new connection, rows
upserted on the record's identity), :class:`~connectors.kafka.sink.MessageSink` (produced per batch,
flushed when settled: at each epoch's end in a flow; an unacknowledged record raises),
:class:`~connectors.postgres.alert_sinks.AlertSink` (with a webhook, each alert version queued in its
outbox in the same transaction; background threads deliver it, :mod:`connectors.webhook.delivery`).

A sink whose writes are acknowledged later than they return (Kafka) implements :meth:`BatchSink.settle`:
wait until everything written is acknowledged, raise if some was not. In a flow,
:class:`~connectors.overlap.OverlappedSink` settles each partition before its epoch can be committed.

Outside a flow (seeding, tests, benchmarks) the same writer is used directly::

    writer = TelemetrySink(conninfo).open()
    writer.write(rows)  # rows newly written; the same rows again write 0
    writer.close()
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

log = logging.getLogger(__name__)

Record = TypeVar("Record")
Destination = TypeVar("Destination")


class BatchSink(DynamicSink[Record | list[Record]], ABC, Generic[Record, Destination]):
    """Subclasses set ``what`` (the records' name in logs) and ``written_as`` (what the count of
    :meth:`write_to` means), and implement :meth:`connect` and :meth:`write_to`; :meth:`disconnect`
    when the destination holds something to release. ``batch_size`` caps the records per write."""

    what: ClassVar[str] = "records"
    written_as: ClassVar[str] = "written"

    def __init__(self, *, batch_size: int | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size

    @abstractmethod
    def connect(self) -> Destination:
        """A writer's own destination (it may open its connection on the first write)."""

    @abstractmethod
    def write_to(self, destination: Destination, batch: Sequence[Record]) -> int:
        """Write ``batch`` (not empty) to ``destination``; return how many records were newly written."""

    def settle(self, destination: Destination) -> None:
        """Return once every record written to ``destination`` is stored; raise if some was not
        (default: nothing to wait for, each :meth:`write_to` stores its batch before it returns)."""

    def acknowledged(self, destination: Destination) -> None:
        """Like :meth:`settle`, but callable from a thread other than the writer's, while it writes: return
        once every record written to ``destination`` before the call is stored; raise if some was not.
        (:class:`~connectors.overlap.FencedSink` waits so before it writes another sink.)"""

    def serve(self, destination: Destination) -> None:
        """Called in the writer's thread while it waits for something else (a fenced background write):
        serve what the destination needs served meanwhile (Kafka: delivery reports, the stall watch)."""

    def disconnect(self, destination: Destination) -> None:
        """Release the destination when its writer closes (flush, close a connection)."""

    def route_key(self, record: Record) -> bytes:
        """What records must stay in one partition, in order (:class:`~connectors.overlap.OverlappedSink`):
        the record's twin."""
        return record.twin_id.encode()  # type: ignore[attr-defined]

    def open(self) -> BatchWriter[Record, Destination]:
        """A writer with its own destination."""
        return BatchWriter(self, self.connect())

    def build(self, step_id: str, worker_index: int, worker_count: int) -> BatchWriter[Record, Destination]:
        writer = self.open()
        writer.label = f"worker {worker_index} {step_id}"
        return writer


class BatchWriter(StatelessSinkPartition[Record | list[Record]], Generic[Record, Destination]):
    """One destination's writer for a :class:`BatchSink`; a Bytewax sink partition as well."""

    def __init__(self, sink: BatchSink[Record, Destination], destination: Destination) -> None:
        self._sink = sink
        self.destination = destination
        self.label = type(sink).__name__
        self.received = 0  # records given to write
        self.written = 0  # records the sink reported newly written

    def write(self, records: Sequence[Record]) -> int:
        """Write ``records`` in batches of at most ``batch_size``; returns records newly written."""
        size = self._sink.batch_size
        batches = [records] if size is None or len(records) <= size else _chunks(records, size)
        total = 0
        for batch in batches:
            if not batch:
                continue
            total += self._sink.write_to(self.destination, batch)
            self.received += len(batch)
        self.written += total
        return total

    def write_batch(self, items: list[Record | list[Record]]) -> None:
        """Bytewax's call: flatten lists of records, then :meth:`write`."""
        self.write(flatten(items))

    def settle(self) -> None:
        """Return once every record written is stored (:meth:`BatchSink.settle`)."""
        self._sink.settle(self.destination)

    def acknowledged(self) -> None:
        """From any thread: once every record written before the call is stored (:meth:`BatchSink.acknowledged`)."""
        self._sink.acknowledged(self.destination)

    def serve(self) -> None:
        """What the destination needs while the writer's thread waits (:meth:`BatchSink.serve`)."""
        self._sink.serve(self.destination)

    def close(self) -> None:
        log.info(
            "%s: %d %s received, %d %s", self.label, self.received, self._sink.what, self.written, self._sink.written_as
        )
        self._sink.disconnect(self.destination)


def flatten(items: Sequence[Record | list[Record]]) -> list[Record]:
    """Items (records, or lists of records) as one list of records, order kept."""
    records: list[Record] = []
    for item in items:
        if isinstance(item, list):
            records.extend(item)
        else:
            records.append(item)
    return records


def _chunks(records: Sequence[Record], size: int) -> list[Sequence[Record]]:
    return [records[start : start + size] for start in range(0, len(records), size)]
