"""Write twin state versions, sync quality and window aggregates to PostgreSQL, idempotently.

* ``twin_state_history`` and ``twin_sync_quality``: upsert on the version's identity; a replay
  after Bytewax recovery writes the same versions again and overwrites them in place, so there
  is one row per version and no gap.
* ``telemetry_windows``: upsert on (twin_id, sensor, window_size, window_start) that only a
  higher version may overwrite: corrections win, replays of older versions change nothing.

One transaction per batch; connection failures are retried with backoff (nothing is dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg.types.json import Jsonb

from operators.event_windows import WindowRow
from operators.twin_state import StateChange
from twinflow.retry import retry

log = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "twin_id, version, event_time, status, mode, learn, reported, desired, delta, conflicts, commands, "
    "consistency_score, sync_latency_ms, last_sync_time, desync_since, change"
)
HISTORY_SQL = (
    f"INSERT INTO twin_state_history ({HISTORY_COLUMNS}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (twin_id, version) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in HISTORY_COLUMNS.split(", ")[2:])
    + ", recorded_at = now()"
)
QUALITY_SQL = (
    "INSERT INTO twin_sync_quality "
    "(twin_id, ts, version, status, consistency_score, sync_latency_ms, conflicts) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (twin_id, ts, version) DO UPDATE SET status = EXCLUDED.status, "
    "consistency_score = EXCLUDED.consistency_score, sync_latency_ms = EXCLUDED.sync_latency_ms, "
    "conflicts = EXCLUDED.conflicts"
)
WINDOW_SQL = (
    "INSERT INTO telemetry_windows (twin_id, sensor, window_size, window_start, window_end, count, mean, "
    "min, max, last, stddev, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (twin_id, sensor, window_size, window_start) DO UPDATE SET "
    "window_end = EXCLUDED.window_end, count = EXCLUDED.count, mean = EXCLUDED.mean, min = EXCLUDED.min, "
    "max = EXCLUDED.max, last = EXCLUDED.last, stddev = EXCLUDED.stddev, version = EXCLUDED.version, "
    "updated_at = now() WHERE telemetry_windows.version < EXCLUDED.version"
)

_json = msgspec.json.Encoder()


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: _json.encode(v).decode())


def history_params(c: StateChange) -> tuple[Any, ...]:
    s = c.snapshot
    return (
        c.twin_id,
        c.version,
        c.at,
        s["status"],
        s["mode"],
        s["learn"],
        _jsonb(s["reported"]),
        _jsonb(s["desired"]),
        _jsonb(s["delta"]),
        s["conflicts"],
        _jsonb(s["commands"]),
        s["consistency_score"],
        s["sync_latency_ms"],
        s["last_sync_time"],
        s["desync_since"],
        _jsonb(c.change),
    )


def quality_params(c: StateChange) -> tuple[Any, ...]:
    s = c.snapshot
    return (
        c.twin_id,
        c.at,
        c.version,
        s["status"],
        s["consistency_score"],
        s["sync_latency_ms"],
        len(s["conflicts"]),
    )


def window_params(r: WindowRow) -> tuple[Any, ...]:
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


class TwinWriter:
    """A reconnecting batch writer for state changes and window rows; one per sink partition."""

    def __init__(self, conninfo: str, *, max_attempts: int | None = None) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection | None = None
        self._max_attempts = max_attempts
        self.versions_written = 0
        self.windows_written = 0

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=False)
        return self._conn

    def _write_once(self, changes: Sequence[StateChange], windows: Sequence[WindowRow]) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                if changes:
                    cur.executemany(HISTORY_SQL, [history_params(c) for c in changes])
                    cur.executemany(QUALITY_SQL, [quality_params(c) for c in changes])
                if windows:
                    cur.executemany(WINDOW_SQL, [window_params(r) for r in windows])
            conn.commit()
        except psycopg.OperationalError:
            self.close()
            raise
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise

    def write(self, items: Sequence[StateChange | WindowRow]) -> None:
        """Write a batch of state changes and window rows in one transaction."""
        changes = [i for i in items if isinstance(i, StateChange)]
        windows = [i for i in items if isinstance(i, WindowRow)]
        if not changes and not windows:
            return
        retry(
            lambda: self._write_once(changes, windows),
            retry_on=(psycopg.OperationalError,),
            attempts=self._max_attempts,
            what=f"writing {len(changes)} twin versions and {len(windows)} window rows",
        )
        self.versions_written += len(changes)
        self.windows_written += len(windows)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class _TwinPartition(StatelessSinkPartition[StateChange | WindowRow]):
    def __init__(self, conninfo: str, worker: int) -> None:
        self._writer = TwinWriter(conninfo)
        self._worker = worker

    def write_batch(self, items: list[StateChange | WindowRow]) -> None:
        self._writer.write(items)

    def close(self) -> None:
        log.info(
            "worker %d twin sink: %d versions, %d window rows written",
            self._worker,
            self._writer.versions_written,
            self._writer.windows_written,
        )
        self._writer.close()


class TwinSink(DynamicSink[StateChange | WindowRow]):
    """Bytewax sink for :class:`StateChange` and :class:`WindowRow` items; a connection per worker."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TwinPartition:
        return _TwinPartition(self._conninfo, worker_index)
