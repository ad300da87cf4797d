"""Write twin state versions (and so their sync quality) and window aggregates to PostgreSQL, idempotently.

* ``twin_state_history`` is append-only (migration 0050 refuses UPDATE and DELETE): a version
  is inserted once; a replay after Bytewax recovery that writes the same (twin_id, version)
  again changes nothing (``ON CONFLICT DO NOTHING``: the first write of a version wins). A version
  the table holds at **another event time** is not written either and is logged as a warning naming
  the twins: a replay that met the input topics in another interleaving (docs/reconciliation.md,
  "Limits"), or another history of the twin (a second writer of the same twin ids on this database,
  or a recovery state older than the database).
* ``twin_sync_quality`` is a view of the history (migration 0110): a version's sync-quality point
  is its history row, not written again.
* ``telemetry_windows``: upsert on (twin_id, sensor, window_size, window_start) that only a
  higher version may overwrite: corrections win, replays of older versions change nothing.

A :class:`~connectors.postgres.sink.PostgresSink` (batching, connection, retries): each batch is
written with ``INSERT … SELECT … FROM unnest(…) ON CONFLICT``, its columns sent as binary arrays (no
staging tables), in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import psycopg

from connectors.postgres.sink import PostgresSink
from operators.twin.event_windows import WindowRow
from operators.twin.state import StateChange

log = logging.getLogger("twinflow.twin_sink")

# A batch is sent as one statement with its columns as binary arrays (``unnest``), not COPied into
# temporary staging tables: in the tailing regime a batch holds a few versions per twin, and a staging
# table's ``ON COMMIT DELETE ROWS`` truncation (its TOAST table and index rebuilt at every commit) cost
# more PostgreSQL CPU than the rows (benchmarks/RESULTS.md, "Twin sink: unnest instead of staging").
# A version is sent as its published document (StateChange.document, the twin.state value: encoded once
# for Kafka and here; sent as its UTF-8 bytes, not decoded to text and encoded again); the columns are
# read out of it in the database. DISTINCT ON also keeps the parsed document from being inlined into
# every column expression (parsed once per row, not once per column: ~3x the CPU without it).
# Append-only: a version is written once; a replayed version changes nothing. Its sync-quality point
# is the row itself (the view twin_sync_quality, migration 0110).
HISTORY_MOVE = (
    "INSERT INTO twin_state_history (twin_id, version, desired_version, event_time, status, mode, learn,"
    " reported, desired, delta, conflicts, commands, consistency_score, sync_latency_ms, last_sync_time,"
    " desync_since, simulated, connectivity, change)"
    " SELECT twin_id, version, coalesce((d->>'desired_version')::bigint, 0), event_time, d->>'status',"
    " d->>'mode', (d->>'learn')::boolean, d->'reported', d->'desired', d->'delta',"
    " ARRAY(SELECT jsonb_array_elements_text(d->'conflicts')), d->'commands', (d->>'consistency_score')::float8,"
    " (d->>'sync_latency_ms')::float8, (d->>'last_sync_time')::timestamptz, (d->>'desync_since')::timestamptz,"
    " d->'simulated', d->'connectivity', d->'change'"
    " FROM (SELECT DISTINCT ON (twin_id, version) twin_id, version, event_time,"
    " convert_from(document, 'UTF8')::jsonb AS d"
    " FROM unnest(%b::text[], %b::int8[], %b::timestamptz[], %b::bytea[]) AS s (twin_id, version, event_time,"
    " document)"
    " ORDER BY twin_id, version) AS staged"
    " ON CONFLICT (twin_id, version) DO NOTHING"
)
# The versions of a batch the table already held at another event time: a replay in another interleaving
# of the input topics, or another writer's history of the twin.
DIVERGED = (
    "SELECT h.twin_id, h.version, h.event_time, s.event_time"
    " FROM unnest(%b::text[], %b::int8[], %b::timestamptz[]) AS s (twin_id, version, event_time)"
    " JOIN twin_state_history h ON h.twin_id = s.twin_id AND h.version = s.version"
    " WHERE h.event_time <> s.event_time ORDER BY h.twin_id, h.version"
)
# Only a higher version overwrites a window row: corrections win, replays of older versions do nothing.
WINDOW_MOVE = (
    "INSERT INTO telemetry_windows (twin_id, sensor, window_size, window_start, window_end, count, mean,"
    " min, max, last, stddev, version)"
    " SELECT DISTINCT ON (twin_id, sensor, window_size, window_start) twin_id, sensor, window_size,"
    " window_start, window_end, count, mean, min, max, last, stddev, version"
    " FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[], %b::int8[],"
    " %b::float8[], %b::float8[], %b::float8[], %b::float8[], %b::float8[], %b::int4[])"
    " AS s (twin_id, sensor, window_size, window_start, window_end, count, mean, min, max, last, stddev, version)"
    " ORDER BY twin_id, sensor, window_size, window_start, version DESC"
    " ON CONFLICT (twin_id, sensor, window_size, window_start) DO UPDATE SET"
    " window_end = EXCLUDED.window_end, count = EXCLUDED.count, mean = EXCLUDED.mean, min = EXCLUDED.min,"
    " max = EXCLUDED.max, last = EXCLUDED.last, stddev = EXCLUDED.stddev, version = EXCLUDED.version,"
    " updated_at = now() WHERE telemetry_windows.version < EXCLUDED.version"
)


def history_columns(changes: Sequence[StateChange]) -> list[list[Any]]:
    """The versions' (twin_id, version, event_time, document) as four columns."""
    return [[c.twin_id for c in changes], [c.version for c in changes], [c.at for c in changes],
            [c.document for c in changes]]  # fmt: skip


def window_columns(rows: Sequence[WindowRow]) -> list[list[Any]]:
    """The window rows' twelve fields as columns (an on/off parameter's min, max and last are sent as
    1.0/0.0, as a float8 COPY sent them: an array takes the type of its first element)."""
    return [list(column) for column in zip(*map(_window_row, rows), strict=True)]


def _window_row(r: WindowRow) -> tuple[Any, ...]:
    return (r.twin_id, r.sensor, r.window, r.start, r.end, r.count, r.mean, float(r.min), float(r.max),
            float(r.last), r.stddev, r.version)  # fmt: skip


class TwinSink(PostgresSink[StateChange | WindowRow]):
    """Items are :class:`StateChange` and :class:`WindowRow` records, or lists of them (the twin flow
    emits one list per twin and batch); a connection per worker."""

    what = "twin versions and window rows"

    def write(self, conn: psycopg.Connection, items: Sequence[StateChange | WindowRow]) -> int:
        changes = [i for i in items if isinstance(i, StateChange)]
        windows = [i for i in items if isinstance(i, WindowRow)]
        written = 0
        with conn.cursor() as cur:
            if changes:
                columns = history_columns(changes)
                cur.execute(HISTORY_MOVE, columns)
                written += cur.rowcount
                # Fewer rows than versions: some were there already (or repeated in the batch). Rare, and the
                # common batch pays no per-version check for it.
                if cur.rowcount < len(changes):
                    _report_diverged(cur.execute(DIVERGED, columns[:3]).fetchall())
            if windows:
                cur.execute(WINDOW_MOVE, window_columns(windows))
                written += cur.rowcount
        return written


def _report_diverged(rows: list[tuple[str, int, Any, Any]]) -> None:
    """Log the versions the table holds at other event times (not written: the table is append-only)."""
    if not rows:
        return
    shown = "; ".join(f"{twin} version {v} stored at {held.astimezone(UTC):%Y-%m-%d %H:%M:%S}, this one at "
                      f"{ours.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" for twin, v, held, ours in rows[:5])  # fmt: skip
    log.warning(
        "%d twin version(s) not written: twin_state_history holds them at other event times (%s%s). Right after "
        "a recovery this is a replay that met the input topics in another order (the stored versions stay); "
        "otherwise another writer writes these twin ids to this database (a second deployment, or a demo before "
        "it had its own database) or the flow resumed from a recovery state older than the database: give each "
        "deployment its own database or twin ids",
        len(rows),
        shown,
        "; …" if len(rows) > 5 else "",
    )
