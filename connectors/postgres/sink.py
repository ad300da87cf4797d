"""The base of every PostgreSQL sink: a :class:`~connectors.batch_sink.BatchSink` whose destination
is a reconnecting session; a concrete sink writes one batch inside a transaction.

* **Connection and retries** (:class:`~connectors.postgres.session.Session`): ``setup`` statements
  (e.g. temporary staging tables) run on every new connection; a transaction that fails because the
  connection broke is retried with backoff on a new connection, forever unless ``max_attempts`` is
  given, so a batch is never dropped. Any other error rolls back and stops the flow.
* **Idempotency contract**: a batch may reach :meth:`PostgresSink.write` more than once (a retried
  transaction whose commit was lost with the connection, Bytewax's replay after recovery, a topic
  read again), also with records repeated inside one batch. ``write`` must leave the same rows
  however often it sees a record: insert on the record's identity with ``ON CONFLICT``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic

import psycopg

from connectors.batch_sink import BatchSink, Record
from connectors.postgres.session import Session


class PostgresSink(BatchSink[Record, Session], Generic[Record]):
    """Subclasses set ``what`` (the records' name in logs), optionally ``setup``, and implement
    :meth:`write`. ``batch_size`` caps the records per transaction; ``max_attempts`` bounds the
    retries on connection loss (``None``: retry forever, what a flow needs)."""

    setup: ClassVar[tuple[str, ...]] = ()
    written_as = "rows written (the others changed nothing: already stored)"

    def __init__(self, conninfo: str, *, batch_size: int | None = None, max_attempts: int | None = None) -> None:
        super().__init__(batch_size=batch_size)
        self._conninfo = conninfo
        self._max_attempts = max_attempts

    @abstractmethod
    def write(self, conn: psycopg.Connection, batch: Sequence[Record]) -> int:
        """Write ``batch`` (not empty) inside the open transaction, idempotently (see the module
        docstring); return how many rows were newly written or changed."""

    def connect(self) -> Session:
        return Session(self._conninfo, setup=self.setup, max_attempts=self._max_attempts, name=type(self).__name__)

    def write_to(self, session: Session, batch: Sequence[Record]) -> int:
        return session.transaction(lambda conn: self.write(conn, batch), f"writing {len(batch)} {self.what}")

    def disconnect(self, session: Session) -> None:
        session.close()
