"""Write telemetry rows to PostgreSQL/TimescaleDB in batches, idempotently.

Each batch is binary-COPied into a temporary staging table and moved with
``INSERT … ON CONFLICT DO NOTHING`` on the reading's identity (twin_id, sensor, ts),
in one transaction: a batch delivered twice (retry, Bytewax recovery replay)
leaves one copy of each row. Connection failures are retried with backoff and
reconnect; the batch is never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from connectors.postgres.session import Session
from operators.ingest import TelemetryRow

log = logging.getLogger(__name__)

STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage ("
    " twin_id text, sensor text, ts timestamptz, value double precision,"
    " seq bigint, quality smallint, source text) ON COMMIT DELETE ROWS"
)
COPY_SQL = "COPY telemetry_stage (twin_id, sensor, ts, value, seq, quality, source) FROM STDIN (FORMAT BINARY)"
# DO NOTHING also absorbs duplicates inside one batch (the first copy wins).
MOVE_SQL = (
    "INSERT INTO telemetry (twin_id, sensor, ts, value, seq, quality, source) "
    "SELECT twin_id, sensor, ts, value, seq, quality, source FROM telemetry_stage "
    "ON CONFLICT (twin_id, sensor, ts) DO NOTHING"
)
COPY_TYPES = ["text", "text", "timestamptz", "float8", "int8", "int2", "text"]


class TelemetryWriter:
    """A reconnecting batch writer; one per sink partition (worker).

    Usage: ``TelemetryWriter(conninfo).write(rows)`` returns the number of rows newly
    inserted; writing the same rows again returns 0.
    """

    def __init__(self, conninfo: str, *, max_attempts: int | None = None) -> None:
        self._db = Session(conninfo, setup=[STAGE_DDL], max_attempts=max_attempts)
        self.rows_inserted = 0
        self.rows_duplicate = 0

    @staticmethod
    def _copy_and_move(conn: psycopg.Connection, rows: Sequence[TelemetryRow]) -> int:
        with conn.cursor() as cur:
            with cur.copy(COPY_SQL) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            cur.execute(MOVE_SQL)
            return cur.rowcount

    def write(self, rows: Sequence[TelemetryRow]) -> int:
        """Write a batch; returns rows newly inserted (duplicates are skipped)."""
        if not rows:
            return 0
        inserted = self._db.transaction(
            lambda conn: self._copy_and_move(conn, rows), f"writing {len(rows)} telemetry rows"
        )
        self.rows_inserted += inserted
        self.rows_duplicate += len(rows) - inserted
        return inserted

    def close(self) -> None:
        self._db.close()
