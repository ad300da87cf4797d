"""The telemetry flow's sink: telemetry rows into PostgreSQL/TimescaleDB, idempotently.

A :class:`~connectors.postgres.sink.PostgresSink` (batching, connection, retries) that writes each
batch in one transaction, one of two ways:

* **COPY** (the usual case: a batch of new readings): the batch is binary-COPied straight into
  ``telemetry`` under a savepoint; the primary key on the reading's identity (twin_id, sensor, ts)
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
import weakref
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar, NamedTuple

import psycopg
from psycopg import sql

from connectors.postgres.copy_insert import copy_binary
from connectors.postgres.sink import PostgresSink
from operators.telemetry.ingest import TelemetryRow, TypedRow

log = logging.getLogger(__name__)
STAGE = "telemetry_stage"
STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ("
    " twin_id text, sensor text, ts timestamptz, value double precision,"
    " seq bigint, quality smallint, source text, value_type smallint NOT NULL DEFAULT 0, status text,"
    " text_value text)"
    " ON COMMIT DELETE ROWS"
)
_COLUMNS = "twin_id, sensor, ts, value, seq, quality, source"
_TYPED_COLUMNS = _COLUMNS + ", value_type, status, text_value"
COPY_TYPES = ["text", "text", "timestamptz", "float8", "int8", "int2", "text"]
COPY_TYPED_TYPES = [*COPY_TYPES, "int2", "text", "text"]
SAVEPOINT = "SAVEPOINT telemetry_copy"
ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT telemetry_copy"


class Statements(NamedTuple):
    """The statements that write telemetry rows into one table (``telemetry``; benchmarks use a copy)."""

    copy: sql.Composed  # seven columns
    copy_typed: sql.Composed  # ten columns
    move: sql.Composed  # staging table -> table, ON CONFLICT DO NOTHING (the first copy of a row wins)
    move_typed: sql.Composed


@cache
def statements(table: str) -> Statements:
    def with_table(template: str) -> sql.Composed:
        return sql.SQL(template).format(sql.Identifier(table))

    move = "INSERT INTO {{}} ({0}) SELECT {0} FROM " + STAGE + " ON CONFLICT (twin_id, sensor, ts) DO NOTHING"
    return Statements(
        with_table(f"COPY {{}} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"),
        with_table(f"COPY {{}} ({_TYPED_COLUMNS}) FROM STDIN (FORMAT BINARY)"),
        with_table(move.format(_COLUMNS)),
        with_table(move.format(_TYPED_COLUMNS)),
    )


def copy_rows(cur: psycopg.Cursor, table: str, rows: Sequence[TelemetryRow | TypedRow]) -> bool:
    """Binary-COPY ``rows`` into ``table``: plain numbers with seven columns, typed rows with ten.
    Returns whether the batch held typed rows."""
    typed = [r for r in rows if len(r) != 7]  # rare; a scan costs ~40 ns per row
    plain = rows if not typed else [r for r in rows if len(r) == 7]
    into = statements(table)
    for statement, types, part in ((into.copy, COPY_TYPES, plain), (into.copy_typed, COPY_TYPED_TYPES, typed)):
        if part:
            copy_binary(cur, statement, types, part)
    return bool(typed)


def stage_rows(cur: psycopg.Cursor, table: str, rows: Sequence[TelemetryRow | TypedRow]) -> int:
    """The duplicate-tolerant write: COPY into the staging table, move what ``table`` lacks; rows inserted."""
    typed = copy_rows(cur, STAGE, rows)
    into = statements(table)
    cur.execute(into.move_typed if typed else into.move)
    return cur.rowcount


class TelemetrySink(PostgresSink[TelemetryRow | TypedRow]):
    """Items are rows or lists of rows (one Kafka poll's worth); a connection per worker.

    ``TelemetrySink(conninfo).open().write(rows)`` returns the number of rows newly inserted;
    writing the same rows again returns 0.
    """

    what = "telemetry rows"
    setup = (STAGE_DDL,)
    table: ClassVar[str] = "telemetry"

    def __init__(self, conninfo: str, **options: Any) -> None:
        super().__init__(conninfo, **options)
        # Connections whose last batch held stored or repeated rows: they stage their next batch.
        self._staging: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()

    def write(self, conn: psycopg.Connection, rows: Sequence[TelemetryRow | TypedRow]) -> int:
        with conn.cursor() as cur:
            if conn not in self._staging:
                cur.execute(SAVEPOINT)
                try:
                    copy_rows(cur, self.table, rows)
                    return len(rows)
                except psycopg.errors.UniqueViolation:
                    cur.execute(ROLLBACK_TO_SAVEPOINT)
            inserted = stage_rows(cur, self.table, rows)
        if inserted == len(rows) and conn in self._staging:
            self._staging.discard(conn)
            log.info("telemetry batch of %d rows all new: back to COPY", len(rows))
        elif inserted < len(rows) and conn not in self._staging:
            self._staging.add(conn)
            log.info("telemetry batch held %d stored or repeated rows: staging", len(rows) - inserted)
        return inserted
