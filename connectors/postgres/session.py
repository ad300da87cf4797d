"""One reconnecting PostgreSQL session with retried transactions, shared by every writer.

A transaction that fails because the connection broke (server restart, network) is retried
with backoff on a new connection; any other error rolls back and propagates. ``setup``
statements (e.g. temporary staging tables) run on every new connection. A session given a ``name``
(its user's class, e.g. ``TelemetrySink``) connects as ``application_name`` ``twinflow <name>``: which
writer a connection is, in ``pg_stat_activity`` and the server's logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg

from connectors.retry import retry

T = TypeVar("T")


class Session:
    def __init__(
        self, conninfo: str, *, setup: Sequence[str] = (), max_attempts: int | None = None, name: str | None = None
    ) -> None:
        self._conninfo = conninfo
        self._setup = tuple(setup)
        self._max_attempts = max_attempts
        self._named = {"application_name": f"twinflow {name}"} if name else {}
        self.conn: psycopg.Connection | None = None

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self._conninfo, autocommit=False, **self._named)
            for statement in self._setup:
                self.conn.execute(statement)
            self.conn.commit()
        return self.conn

    def transaction(self, fn: Callable[[psycopg.Connection], T], what: str) -> T:
        """Run ``fn(conn)`` and commit; retried forever (or ``max_attempts``) on connection loss."""

        def once() -> T:
            conn = self.connect()
            try:
                result = fn(conn)
                conn.commit()
                return result
            except psycopg.OperationalError:
                self.close()
                raise
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

        return retry(once, retry_on=(psycopg.OperationalError,), attempts=self._max_attempts, what=what)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
