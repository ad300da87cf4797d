"""The base of every PostgreSQL sink: Bytewax plumbing, batching, connection, retries, idempotency.

A concrete sink says only how to write one batch (:meth:`BatchSink.write`); the base owns the rest:

* **Bytewax**: a :class:`~bytewax.outputs.DynamicSink` whose partition (one per worker) has its own
  connection. Items may be records or lists of records (a flow step that emits one list per twin
  and batch); lists are flattened, order kept.
* **Batching**: each Bytewax batch is written in transactions of at most ``batch_size`` records
  (``None``: the whole batch in one).
* **Connection and retries** (:class:`~connectors.postgres.session.Session`): ``setup`` statements
  (e.g. temporary staging tables) run on every new connection; a transaction that fails because the
  connection broke is retried with backoff on a new connection, forever unless ``max_attempts`` is
  given, so a batch is never dropped. Any other error rolls back and stops the flow.
* **Idempotency contract**: a batch may reach :meth:`BatchSink.write` more than once (a retried
  transaction whose commit was lost with the connection, Bytewax's replay after recovery, a topic
  read again), also with records repeated inside one batch. ``write`` must leave the same rows
  however often it sees a record: insert on the record's identity with ``ON CONFLICT``.

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

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.postgres.session import Session

log = logging.getLogger(__name__)

Record = TypeVar("Record")


class BatchSink(DynamicSink[Record | list[Record]], ABC, Generic[Record]):
    """Subclasses set ``what`` (the records' name in logs), optionally ``setup``, and implement
    :meth:`write`. ``batch_size`` caps the records per transaction; ``max_attempts`` bounds the
    retries on connection loss (``None``: retry forever, what a flow needs)."""

    what: ClassVar[str] = "records"
    setup: ClassVar[tuple[str, ...]] = ()

    def __init__(self, conninfo: str, *, batch_size: int | None = None, max_attempts: int | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._conninfo = conninfo
        self.batch_size = batch_size
        self._max_attempts = max_attempts

    @abstractmethod
    def write(self, conn: psycopg.Connection, batch: Sequence[Record]) -> int:
        """Write ``batch`` (not empty) inside the open transaction, idempotently (see the module
        docstring); return how many rows were newly written or changed."""

    def open(self) -> BatchWriter[Record]:
        """A writer with its own connection (opened on the first write)."""
        return BatchWriter(self, Session(self._conninfo, setup=self.setup, max_attempts=self._max_attempts))

    def build(self, step_id: str, worker_index: int, worker_count: int) -> BatchWriter[Record]:
        writer = self.open()
        writer.label = f"worker {worker_index} {step_id}"
        return writer


class BatchWriter(StatelessSinkPartition[Record | list[Record]], Generic[Record]):
    """One connection's writer for a :class:`BatchSink`; a Bytewax sink partition as well."""

    def __init__(self, sink: BatchSink[Record], session: Session) -> None:
        self._sink = sink
        self.session = session
        self.label = type(sink).__name__
        self.received = 0  # records given to write
        self.written = 0  # rows the sink reported newly written or changed

    def write(self, records: Sequence[Record]) -> int:
        """Write ``records`` in transactions of at most ``batch_size``; returns rows newly written."""
        size = self._sink.batch_size
        batches = [records] if size is None or len(records) <= size else _chunks(records, size)
        total = 0
        for batch in batches:
            if not batch:
                continue
            total += self.session.transaction(
                lambda conn, batch=batch: self._sink.write(conn, batch),
                f"writing {len(batch)} {self._sink.what}",
            )
            self.received += len(batch)
        self.written += total
        return total

    def write_batch(self, items: list[Record | list[Record]]) -> None:
        """Bytewax's call: flatten lists of records, then :meth:`write`."""
        records: list[Record] = []
        for item in items:
            if isinstance(item, list):
                records.extend(item)
            else:
                records.append(item)
        self.write(records)

    def close(self) -> None:
        log.info(
            "%s: %d %s received, %d rows written (the others changed nothing: already stored)",
            self.label,
            self.received,
            self._sink.what,
            self.written,
        )
        self.session.close()


def _chunks(records: Sequence[Record], size: int) -> list[Sequence[Record]]:
    return [records[start : start + size] for start in range(0, len(records), size)]
