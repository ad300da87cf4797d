"""The telemetry flow's sink: telemetry rows into PostgreSQL/TimescaleDB, idempotently.

A :class:`~connectors.postgres.sink.PostgresSink` (batching, connection, retries) that writes each
batch in one transaction with :class:`~connectors.postgres.copy_insert.CopyInsert`, one of two ways:

* **COPY** (the usual case: a batch of new readings): the batch is binary-COPied straight into
  ``telemetry`` under a savepoint; the primary key on the reading's identity (twin_id, ts, sensor; 0090)
  rejects a row that is already stored, or one that is repeated in the batch, with a unique violation.
* **staging** (after such a violation: a retried transaction whose commit was lost, Bytewax's replay
  after recovery, a repeat inside the batch): the savepoint is rolled back, the batch is binary-COPied
  into a temporary staging table and moved with ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (the
  first copy of a row wins).

Either way a batch delivered twice leaves one copy of each row, and ``write`` returns the rows newly
inserted (the same rows again: 0). After a failed COPY a writer (its connection) stages its next
batches until one inserts every row it holds, so a recovery replay of a whole epoch costs one failed
COPY, not one per batch (benchmarks/insert_paths.py, RESULTS.md "Idempotent telemetry write").

Plain numbers (:class:`TelemetryRow`, the hot path) are copied with the original seven columns
and take the defaults of ``value_type``/``status``; a batch that also holds typed rows
(:class:`TypedRow`: booleans, text, readings without a value, status names) copies those with all ten.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from connectors.postgres.copy_insert import CopyInsert, CopyTable
from connectors.postgres.sink import PostgresSink
from operators.telemetry.ingest import TelemetryRow, TypedRow

log = logging.getLogger(__name__)
# TelemetryRow's seven values, then TypedRow's three more (value_type, status, text_value)
COLUMNS = ("twin_id", "sensor", "ts", "value", "seq", "quality", "source", "value_type", "status", "text_value")
TYPES = ("text", "text", "timestamptz", "float8", "int8", "int2", "text", "int2", "text", "text")
TELEMETRY = CopyTable(
    "telemetry", COLUMNS, TYPES, ("twin_id", "ts", "sensor"),
    short=len(TelemetryRow._fields), defaults=(("value_type", "0"),),
)


class TelemetrySink(PostgresSink[TelemetryRow | TypedRow]):
    """Items are rows or lists of rows (one Kafka poll's worth); a connection per worker.

    ``TelemetrySink(conninfo).open().write(rows)`` returns the number of rows newly inserted;
    writing the same rows again returns 0. ``spec`` names the table (benchmarks write a copy).
    """

    what = "telemetry rows"
    spec = TELEMETRY
    setup = (TELEMETRY.setup,)

    def __init__(self, conninfo: str, **options: Any) -> None:
        super().__init__(conninfo, **options)
        self._insert = CopyInsert(log)  # remembers the connections that stage their next batch

    def write(self, conn: psycopg.Connection, rows: Sequence[TelemetryRow | TypedRow]) -> int:
        with conn.cursor() as cur:
            return self._insert.write(cur, self.spec, rows)
