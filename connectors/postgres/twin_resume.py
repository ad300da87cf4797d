"""Read a twin's newest stored version, so the twin flow resumes it when it has no snapshot.

>>> StoredTwins.QUERY.split(" FROM ")[1]
'twin_state_history WHERE twin_id = %s ORDER BY version DESC LIMIT 1'
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.postgres.session import Session


class StoredTwins:
    """One connection per flow process, shared by its workers."""

    QUERY = "SELECT * FROM twin_state_history WHERE twin_id = %s ORDER BY version DESC LIMIT 1"

    def __init__(self, conninfo: str, *, max_attempts: int | None = None) -> None:
        self._db = Session(conninfo, max_attempts=max_attempts, name=type(self).__name__)
        self._lock = threading.Lock()

    def latest(self, twin_id: str) -> dict[str, Any] | None:
        """The newest ``twin_state_history`` row of ``twin_id`` as a dict, or None."""

        def read(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                # Planned for each twin (never a prepared generic plan): one planned while the history
                # was small scans the whole table for every later twin (benchmarks/RESULTS.md).
                return cur.execute(self.QUERY, (twin_id,), prepare=False).fetchone()

        with self._lock:
            return self._db.transaction(read, f"reading the stored state of {twin_id}")

    def close(self) -> None:
        self._db.close()
