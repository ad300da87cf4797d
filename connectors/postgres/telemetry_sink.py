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

from operators.ingest import TelemetryRow
from twinflow.retry import retry

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
        self._conninfo = conninfo
        self._conn: psycopg.Connection | None = None
        self._max_attempts = max_attempts
        self.rows_inserted = 0
        self.rows_duplicate = 0

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=False)
            self._conn.execute(STAGE_DDL)
            self._conn.commit()
        return self._conn

    def _write_once(self, rows: Sequence[TelemetryRow]) -> int:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                with cur.copy(COPY_SQL) as copy:
                    copy.set_types(COPY_TYPES)
                    for row in rows:
                        copy.write_row(row)
                cur.execute(MOVE_SQL)
                inserted = cur.rowcount
            conn.commit()
            return inserted
        except psycopg.OperationalError:
            self.close()
            raise
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise

    def write(self, rows: Sequence[TelemetryRow]) -> int:
        """Write a batch; returns rows newly inserted (duplicates are skipped)."""
        if not rows:
            return 0
        inserted = retry(
            lambda: self._write_once(rows),
            retry_on=(psycopg.OperationalError,),
            attempts=self._max_attempts,
            what=f"writing {len(rows)} telemetry rows",
        )
        self.rows_inserted += inserted
        self.rows_duplicate += len(rows) - inserted
        return inserted

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
