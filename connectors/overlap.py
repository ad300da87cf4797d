"""A sink whose writes overlap the flow's compute, and never fall behind a committed epoch.

Bytewax calls a sink's ``write_batch`` synchronously, so a flow that writes to PostgreSQL waits
for every COPY and commit and computes nothing meanwhile. :class:`OverlappedSink` wraps a
:class:`~connectors.batch_sink.BatchSink` (same destination, same batching, same idempotent
writes) and hands each batch to one background thread per partition (:class:`BackgroundWriter`):

* **Bounded**: a batch waits while one is queued and one is being written (at most two batches in
  flight per partition), so memory stays bounded and a slow database still slows the flow down.
* **In order**: one thread per partition writes its batches in the order they came.
* **Never ahead of the recovery snapshot**: it is a
  :class:`~bytewax.outputs.FixedPartitionedSink`, whose partitions Bytewax asks for a
  ``snapshot()`` at the end of every epoch in which they were written to (with recovery or
  without, Bytewax 0.21 ``src/outputs.rs`` ``partitioned_output``) *before* the epoch can be
  committed. The snapshot waits for the writes in flight, so the Kafka offsets of an epoch are
  committed only after its rows are; ``close()`` (end of the flow, a clean stop) waits as well.
* **Errors stop the flow**: a write that raises is re-raised by the next ``write_batch``,
  ``snapshot`` or ``close``, and nothing after it is written; the epoch is never committed, so a
  restart replays it (the writes are idempotent).
* **Routing**: an item (a record or a list of records) is keyed by :meth:`OverlappedSink.route`
  on its records' ``twin_id``: all of a twin's records go to one partition, in the order one
  upstream worker emitted them, and are written by one thread in that order. ``partitions``
  partitions are used; Bytewax spreads them over the workers (one per worker when there are as
  many as workers) and moves each item to its partition's worker. On a worker of a cluster
  (:mod:`connectors.cluster`) the route picks one of the worker's own partitions, so rows are
  written by the process that made them, not pickled to another one. :data:`SLOTS` partitions are
  always listed, so a recovery snapshot taken with another ``partitions`` still resumes.

The snapshot holds nothing (``None``): the sink's only state is what is still in flight, and that
is written before the snapshot is taken.

With ``background=False`` a partition (:class:`SettledPartition`) writes in the flow's thread and,
at the epoch's end and at ``close()``, *settles* its destination (:meth:`BatchSink.settle
<connectors.batch_sink.BatchSink.settle>`): the Kafka sink (:mod:`connectors.kafka.sink`) produces each
batch without waiting and flushes there, so the epoch is committed only after Kafka acknowledged
its records. Same routing (:meth:`BatchSink.route_key <connectors.batch_sink.BatchSink.route_key>`).

:class:`FencedSink` writes two sinks in one step, *outputs before state*: its items are ``(key, firsts,
thens)``; a partition produces ``firsts`` in the flow's thread (settled at each epoch's end, as above) and
writes ``thens`` in the background, each batch only once every record of ``firsts`` written before it is
acknowledged (:meth:`BatchSink.acknowledged <connectors.batch_sink.BatchSink.acknowledged>`). The twin
flow writes its Kafka outputs and its state history so: a stored twin version is a safe point to resume
from (the twin flow resumes a twin without a snapshot there), because whatever the records it includes
produced has reached Kafka; a kill between the two leaves the version unstored and its records replayed.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.batch_sink import BatchSink, BatchWriter, Destination, Record
from connectors.cluster import this_worker

log = logging.getLogger(__name__)

# Partitions listed to Bytewax, named so that they sort in index order; at most this many are used.
SLOTS = 16
_NAMES = [f"{i:02d}" for i in range(SLOTS)]
_DONE = None  # the queue's last item: the thread ends


class BackgroundWriter(Generic[Record, Destination]):
    """Writes batches with a :class:`BatchWriter` in a thread of its own, in order, two at most in flight;
    ``fence`` (optional) is called in that thread before each batch is written (a wait; it may raise)."""

    def __init__(self, writer: BatchWriter[Record, Destination], fence: Callable[[], None] | None = None) -> None:
        self.writer = writer
        self._fence = fence
        self._queue: queue.Queue[Sequence[Record] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, records: Sequence[Record], serve: Callable[[], None] | None = None) -> None:
        """Queue ``records``; waits while a batch is queued already (calling ``serve`` every 0.2 s meanwhile,
        when given). Raises an earlier write's error."""
        self.raise_error()
        if not records:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"sink {self.writer.label}", daemon=True)
            self._thread.start()
        while True:
            try:
                self._queue.put(records, timeout=0.2)
                return
            except queue.Full:
                self.raise_error()
                if serve is not None:
                    serve()

    def wait(self) -> None:
        """Return once every batch submitted is written; raises a write's error."""
        if self._thread is not None:
            self._queue.join()
        self.raise_error()

    def close(self) -> None:
        """Write what is in flight, end the thread and close the writer; raises a write's error."""
        try:
            if self._thread is not None:
                self._queue.put(_DONE)
                self._thread.join()
                self._thread = None
        finally:
            self.writer.close()
        self.raise_error()

    def raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"{self.writer.label}: a background write failed: {error}") from error

    def _run(self) -> None:
        failed = False
        while True:
            records = self._queue.get()
            try:
                if records is _DONE:
                    return
                if not failed:  # after an error nothing more is written (the epoch is replayed)
                    if self._fence is not None:
                        self._fence()
                    self.writer.write(records)
            except BaseException as exc:  # handed to the flow's thread
                failed = True
                self._error = exc
                log.error("%s: write failed, the flow stops: %s", self.writer.label, exc)
            finally:
                self._queue.task_done()


class OverlappedPartition(StatefulSinkPartition[list[Record], None], Generic[Record, Destination]):
    """One partition of an :class:`OverlappedSink`: its own destination and background thread."""

    def __init__(self, writer: BatchWriter[Record, Destination]) -> None:
        self.background = BackgroundWriter(writer)

    def write_batch(self, values: list[list[Record]]) -> None:
        self.background.submit([r for records in values for r in records])

    def snapshot(self) -> None:
        self.background.wait()

    def close(self) -> None:
        self.background.close()


class SettledPartition(StatefulSinkPartition[list[Record], None], Generic[Record, Destination]):
    """One partition of an :class:`OverlappedSink` with ``background=False``: writes in the flow's
    thread, settles its destination at each epoch's end (``snapshot``) and at ``close``."""

    def __init__(self, writer: BatchWriter[Record, Destination]) -> None:
        self.writer = writer

    def write_batch(self, values: list[list[Record]]) -> None:
        self.writer.write([r for records in values for r in records])

    def snapshot(self) -> None:
        self.writer.settle()

    def close(self) -> None:
        self.writer.close()


class OverlappedSink(FixedPartitionedSink[list[Record], None], Generic[Record, Destination]):
    """``sink`` with its writes overlapping the flow's compute (``background=False``: settled at each
    epoch's end instead), over ``partitions`` partitions (1 to :data:`SLOTS`) keyed by twin. Its input
    is :meth:`route`'s output (flows wire both)."""

    def __init__(self, sink: BatchSink[Record, Destination], partitions: int = 1, *, background: bool = True) -> None:
        if not 1 <= partitions <= SLOTS:
            raise ValueError(f"partitions must be 1 to {SLOTS}, not {partitions}")
        self.sink = sink
        self.partitions = partitions
        self.background = background
        self._part_of: dict[bytes, str] = {}
        self._names: list[str] | None = None  # local_partitions(), on the first route

    def route(self, item: Record | list[Record]) -> list[tuple[str, list[Record]]]:
        """A record or a list of records (one per twin and batch, or one poll's worth) as
        ``(partition, records)`` pairs, records of one twin in one partition, order kept.

        On a worker of a cluster (:func:`~connectors.cluster.this_worker`) a twin's records go to
        one of the partitions this worker holds, so they are written where they were made instead
        of being pickled to another process (:meth:`local_partitions`)."""
        records: list[Record] = item if isinstance(item, list) else [item]
        if self.partitions == 1:
            return [(_NAMES[0], records)]
        parts: dict[str, list[Record]] = {}
        part_of, key_of = self._part_of, self.sink.route_key
        for record in records:
            twin = key_of(record)
            part = part_of.get(twin) or self._partition(twin)
            parts.setdefault(part, []).append(record)
        return list(parts.items())

    def _partition(self, key: bytes) -> str:
        """The partition of ``key`` (a twin), remembered."""
        names = self._names if self._names is not None else self._local_names()
        part = self._part_of[key] = names[zlib.crc32(key) % len(names)]
        return part

    def local_partitions(self) -> list[int]:
        """The partitions :meth:`route` uses on this worker: those Bytewax gives it when the worker is
        known, else all ``partitions``.

        Every worker lists the :data:`SLOTS` partitions, and Bytewax makes partition ``i`` worker
        ``i % workers``'s (round robin in name order); :meth:`build_part` warns if it did not. A
        twin's records are made on one worker (its keyed step's, or the reader of its Kafka
        partition: topics are keyed by twin), so they still go to one partition. A worker that
        holds none of the ``partitions`` (fewer partitions than workers) uses all of them."""
        worker = this_worker()
        every = list(range(self.partitions))
        if worker is None or worker.count == 1:
            return every
        return [i for i in every if worker.owns(i)] or every

    def _local_names(self) -> list[str]:
        self._names = [_NAMES[i] for i in self.local_partitions()]
        return self._names

    def list_parts(self) -> list[str]:
        return list(_NAMES)

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any
    ) -> OverlappedPartition[Record, Destination] | SettledPartition[Record, Destination]:
        writer = self._writer(self.sink, step_id, for_part)
        return OverlappedPartition(writer) if self.background else SettledPartition(writer)

    def _writer(self, sink: BatchSink[Any, Any], step_id: str, for_part: str) -> BatchWriter[Any, Any]:
        """A writer of ``sink`` for partition ``for_part``; warns when the partition is on another worker."""
        worker = this_worker()
        if worker is not None and not worker.owns(int(for_part)):
            log.warning(
                "%s: partition %s is on worker %d, not %d: its rows cross processes",
                step_id,
                for_part,
                worker.index,
                int(for_part) % worker.count,
            )
        writer = sink.open()
        writer.label = f"{step_id} partition {for_part}"
        return writer


class FencedPartition(StatefulSinkPartition[tuple[list[Any], list[Record]], None], Generic[Record, Destination]):
    """One partition of a :class:`FencedSink`: ``first`` written in the flow's thread, ``then`` in the
    background, each batch of it after ``first`` acknowledged what was written before it.

    Once a write or a settle raised (the flow stops), ``close`` only logs what else fails: Bytewax
    closes the partition while it unwinds, where an exception aborts the process before the failure
    is reported."""

    def __init__(self, first: BatchWriter[Any, Any], then: BatchWriter[Record, Destination]) -> None:
        self.first = first
        self.background = BackgroundWriter(then, fence=first.acknowledged)
        self.failed = False

    @contextmanager
    def _failing(self) -> Iterator[None]:
        """Marks the partition failed when the block raises."""
        try:
            yield
        except BaseException:
            self.failed = True
            raise

    def write_batch(self, values: list[tuple[list[Any], list[Record]]]) -> None:
        with self._failing():
            firsts = [r for records, _ in values for r in records]
            if firsts:
                self.first.write(firsts)
            # While it waits for the background (which waits for Kafka), the producer's reports and stall
            # watch are served: a stalled producer is replaced, not waited on for message.timeout.ms.
            self.background.submit([r for _, records in values for r in records], serve=self.first.serve)

    def snapshot(self) -> None:
        with self._failing():
            try:
                self.first.settle()
            finally:  # also after a failed settle: the background's own error is reported with it, not later
                self.background.wait()

    def close(self) -> None:
        first_error: BaseException | None = None
        for close in (self.background.close, self.first.close):
            try:
                close()
            except Exception as exc:
                if self.failed:
                    log.warning("%s: closing after the failure above: %s", self.first.label, exc)
                elif first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error


class FencedSink(OverlappedSink[Record, Destination]):
    """``first`` (settled at each epoch's end: Kafka) and ``then`` (in the background: PostgreSQL) as one
    step over ``partitions`` partitions keyed by twin: a batch of ``then`` is written only once ``first``
    acknowledged every record written before it (outputs before state). Its input is :meth:`route_items`'s
    output.

    >>> from connectors.kafka.sink import MessageSink
    >>> from connectors.postgres.twin_sink import TwinSink
    >>> sink = FencedSink(MessageSink({}), TwinSink("dbname=x"), partitions=2)
    >>> sink.route_items([(b"pump-1", ["state 1"], ["version 1"]), (b"pump-1", ["state 2"], ["version 2"])])
    [('00', (['state 1', 'state 2'], ['version 1', 'version 2']))]
    """

    def __init__(self, first: BatchSink[Any, Any], then: BatchSink[Record, Destination], partitions: int = 1) -> None:
        super().__init__(then, partitions)
        self.first = first

    def route_items(
        self, items: list[tuple[bytes, list[Any], list[Record]]]
    ) -> list[tuple[str, tuple[list[Any], list[Record]]]]:
        """Items ``(key, firsts, thens)`` (one twin's each) as one ``(partition, (firsts, thens))`` per
        partition, a key's records in one partition, order kept."""
        parts: dict[str, tuple[list[Any], list[Record]]] = {}
        for key, firsts, thens in items:
            part = _NAMES[0] if self.partitions == 1 else self._part_of.get(key) or self._partition(key)
            both = parts.get(part)
            if both is None:
                parts[part] = (list(firsts), list(thens))
            else:
                both[0].extend(firsts)
                both[1].extend(thens)
        return list(parts.items())

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> FencedPartition[Record, Destination]:  # type: ignore[override]
        first = self._writer(self.first, step_id, for_part)
        first.label += f" ({self.first.what})"
        return FencedPartition(first, self._writer(self.sink, step_id, for_part))
