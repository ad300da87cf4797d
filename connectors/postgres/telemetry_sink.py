"""The telemetry flow's sink: telemetry rows into PostgreSQL/TimescaleDB, idempotently.

A :class:`~connectors.postgres.sink.PostgresSink` (batching, connection, retries): each batch
is binary-COPied into a temporary staging table and moved with ``INSERT … ON CONFLICT DO NOTHING``
on the reading's identity (twin_id, sensor, ts), in one transaction: a batch delivered twice
(retry, Bytewax recovery replay) leaves one copy of each row.

Plain numbers (:class:`TelemetryRow`, the hot path) are copied with the original seven columns
and take the defaults of ``value_type``/``status``; a batch that also holds typed rows
(:class:`TypedRow`: booleans, text, readings without a value, status names) copies those with all ten.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from connectors.postgres.sink import PostgresSink
from operators.telemetry.ingest import TelemetryRow, TypedRow

STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage ("
    " twin_id text, sensor text, ts timestamptz, value double precision,"
    " seq bigint, quality smallint, source text, value_type smallint NOT NULL DEFAULT 0, status text,"
    " text_value text)"
    " ON COMMIT DELETE ROWS"
)
_COLUMNS = "twin_id, sensor, ts, value, seq, quality, source"
_TYPED_COLUMNS = _COLUMNS + ", value_type, status, text_value"
COPY_SQL = f"COPY telemetry_stage ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
COPY_TYPED_SQL = f"COPY telemetry_stage ({_TYPED_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# DO NOTHING also absorbs duplicates inside one batch (the first copy wins).
MOVE_SQL = (
    f"INSERT INTO telemetry ({_COLUMNS}) SELECT {_COLUMNS} FROM telemetry_stage "
    "ON CONFLICT (twin_id, sensor, ts) DO NOTHING"
)
MOVE_TYPED_SQL = (
    f"INSERT INTO telemetry ({_TYPED_COLUMNS}) SELECT {_TYPED_COLUMNS} FROM telemetry_stage "
    "ON CONFLICT (twin_id, sensor, ts) DO NOTHING"
)
COPY_TYPES = ["text", "text", "timestamptz", "float8", "int8", "int2", "text"]
COPY_TYPED_TYPES = [*COPY_TYPES, "int2", "text", "text"]


class TelemetrySink(PostgresSink[TelemetryRow | TypedRow]):
    """Items are rows or lists of rows (one Kafka poll's worth); a connection per worker.

    ``TelemetrySink(conninfo).open().write(rows)`` returns the number of rows newly inserted;
    writing the same rows again returns 0.
    """

    what = "telemetry rows"
    setup = (STAGE_DDL,)

    def write(self, conn: psycopg.Connection, rows: Sequence[TelemetryRow | TypedRow]) -> int:
        typed = [r for r in rows if len(r) != 7]  # rare; a scan costs ~40 ns per row
        with conn.cursor() as cur:
            with cur.copy(COPY_SQL) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows if not typed else (r for r in rows if len(r) == 7):
                    copy.write_row(row)
            if typed:
                with cur.copy(COPY_TYPED_SQL) as copy:
                    copy.set_types(COPY_TYPED_TYPES)
                    for row in typed:
                        copy.write_row(row)
            cur.execute(MOVE_TYPED_SQL if typed else MOVE_SQL)
            return cur.rowcount
