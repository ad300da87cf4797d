"""Write twin state versions, sync quality and window aggregates to PostgreSQL, idempotently.

* ``twin_state_history`` is append-only (migration 0050 refuses UPDATE and DELETE): a version
  is inserted once; a replay after Bytewax recovery that writes the same (twin_id, version)
  again changes nothing (``ON CONFLICT DO NOTHING``: the first write of a version wins).
* ``twin_sync_quality``: one point per version, inserted together with its history row.
* ``telemetry_windows``: upsert on (twin_id, sensor, window_size, window_start) that only a
  higher version may overwrite: corrections win, replays of older versions change nothing.

A :class:`~connectors.postgres.sink.PostgresSink` (batching, connection, retries): each batch is
binary-COPied into temporary staging tables and moved with ``INSERT … SELECT … ON CONFLICT`` (as
:mod:`connectors.postgres.telemetry_sink` writes a batch that holds stored rows), in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from connectors.postgres.copy_insert import copy_binary
from connectors.postgres.sink import PostgresSink
from operators.twin.event_windows import WindowRow
from operators.twin.state import StateChange

STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS twin_history_stage (twin_id text, version bigint, event_time timestamptz,"
    " document bytea) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS twin_window_stage ("
    " twin_id text, sensor text, window_size text, window_start timestamptz, window_end timestamptz,"
    " count int8, mean float8, min float8, max float8, last float8, stddev float8, version int4)"
    " ON COMMIT DELETE ROWS",
)
# A version is copied as its published document (StateChange.document, the twin.state value: encoded
# once for Kafka and here; copied as its UTF-8 bytes, not decoded to text and encoded again); the columns
# are read out of it in the database.
HISTORY_COPY = "COPY twin_history_stage (twin_id, version, event_time, document) FROM STDIN (FORMAT BINARY)"
HISTORY_TYPES = ["text", "int8", "timestamptz", "bytea"]
# Append-only: a version is written once; a replayed version changes nothing. Its sync-quality point
# is inserted with it (from the rows actually inserted), so a version keeps exactly one point.
HISTORY_MOVE = (
    "WITH inserted AS ("
    " INSERT INTO twin_state_history (twin_id, version, desired_version, event_time, status, mode, learn,"
    " reported, desired, delta, conflicts, commands, consistency_score, sync_latency_ms, last_sync_time,"
    " desync_since, change)"
    " SELECT twin_id, version, coalesce((d->>'desired_version')::bigint, 0), event_time, d->>'status',"
    " d->>'mode', (d->>'learn')::boolean, d->'reported', d->'desired', d->'delta',"
    " ARRAY(SELECT jsonb_array_elements_text(d->'conflicts')), d->'commands', (d->>'consistency_score')::float8,"
    " (d->>'sync_latency_ms')::float8, (d->>'last_sync_time')::timestamptz, (d->>'desync_since')::timestamptz,"
    " d->'change'"
    " FROM (SELECT DISTINCT ON (twin_id, version) twin_id, version, event_time,"
    " convert_from(document, 'UTF8')::jsonb AS d"
    " FROM twin_history_stage ORDER BY twin_id, version) AS staged"
    " ON CONFLICT (twin_id, version) DO NOTHING"
    " RETURNING twin_id, version, event_time, status, consistency_score, sync_latency_ms, conflicts)"
    " INSERT INTO twin_sync_quality (twin_id, ts, version, status, consistency_score, sync_latency_ms, conflicts)"
    " SELECT twin_id, event_time, version, status, consistency_score, sync_latency_ms, cardinality(conflicts)"
    " FROM inserted ON CONFLICT (twin_id, ts, version) DO NOTHING"
)
WINDOW_COPY = (
    "COPY twin_window_stage (twin_id, sensor, window_size, window_start, window_end, count, mean, min, max,"
    " last, stddev, version) FROM STDIN (FORMAT BINARY)"
)
WINDOW_TYPES = [
    "text", "text", "text", "timestamptz", "timestamptz", "int8", "float8", "float8", "float8", "float8",
    "float8", "int4",
]  # fmt: skip
# Only a higher version overwrites a window row: corrections win, replays of older versions do nothing.
WINDOW_MOVE = (
    "INSERT INTO telemetry_windows (twin_id, sensor, window_size, window_start, window_end, count, mean,"
    " min, max, last, stddev, version)"
    " SELECT DISTINCT ON (twin_id, sensor, window_size, window_start) twin_id, sensor, window_size,"
    " window_start, window_end, count, mean, min, max, last, stddev, version"
    " FROM twin_window_stage ORDER BY twin_id, sensor, window_size, window_start, version DESC"
    " ON CONFLICT (twin_id, sensor, window_size, window_start) DO UPDATE SET"
    " window_end = EXCLUDED.window_end, count = EXCLUDED.count, mean = EXCLUDED.mean, min = EXCLUDED.min,"
    " max = EXCLUDED.max, last = EXCLUDED.last, stddev = EXCLUDED.stddev, version = EXCLUDED.version,"
    " updated_at = now() WHERE telemetry_windows.version < EXCLUDED.version"
)


def history_row(c: StateChange) -> tuple[Any, ...]:
    return (c.twin_id, c.version, c.at, c.document)


def window_row(r: WindowRow) -> tuple[Any, ...]:
    return (
        r.twin_id,
        r.sensor,
        r.window,
        r.start,
        r.end,
        r.count,
        r.mean,
        r.min,
        r.max,
        r.last,
        r.stddev,
        r.version,
    )


class TwinSink(PostgresSink[StateChange | WindowRow]):
    """Items are :class:`StateChange` and :class:`WindowRow` records, or lists of them (the twin flow
    emits one list per twin and batch); a connection per worker."""

    what = "twin versions and window rows"
    setup = STAGE_DDL

    def write(self, conn: psycopg.Connection, items: Sequence[StateChange | WindowRow]) -> int:
        changes = [i for i in items if isinstance(i, StateChange)]
        windows = [i for i in items if isinstance(i, WindowRow)]
        written = 0
        with conn.cursor() as cur:
            if changes:
                copy_binary(cur, HISTORY_COPY, HISTORY_TYPES, map(history_row, changes))
                cur.execute(HISTORY_MOVE)
                written += cur.rowcount
            if windows:
                copy_binary(cur, WINDOW_COPY, WINDOW_TYPES, map(window_row, windows))
                cur.execute(WINDOW_MOVE)
                written += cur.rowcount
        return written
