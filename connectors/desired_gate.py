"""The gate's decision store on PostgreSQL: the hash-chained audit, refusals and request verdicts.

:class:`PostgresDecisionStore` is the :class:`operators.twin.desired_gate.DecisionStore` of the twin
flow. ``record`` appends the verdict to ``desired_audit`` (the hash chain,
:mod:`connectors.postgres.audit`), to ``desired_requests`` (its Kafka position and request id:
the memory for replays and restarts) and, when denied, to ``desired_rejections`` — in one
transaction, committed before it returns (retried on connection loss; the flow waits).
``prior`` finds an earlier verdict by Kafka position or (authenticated verdicts only) request id.
``resume_position`` is the newest decided position of a twin (a twin resumed from the database skips records up to it).
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from connectors.postgres.audit import AuditEntry, append, record_rejection
from connectors.postgres.session import Session
from operators.twin.desired_gate import UNAUTHENTICATED, Verdict

_COLS = (
    'topic, partition, "offset", request_id, twin_id, actor, via, decision, reason, detail, old, new, desired_version'
)
BY_POSITION = (
    "SELECT " + _COLS + ' FROM desired_requests WHERE topic = %s AND partition = %s AND "offset" = %s'
)
# The first verdict that claimed the request id: records whose signer was not established never do.
BY_REQUEST = (
    "SELECT " + _COLS + " FROM desired_requests WHERE request_id = %s AND reason <> ALL(%s) ORDER BY id LIMIT 1"
)
INSERT = (
    "INSERT INTO desired_requests (" + _COLS + ", audit_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ' ON CONFLICT (topic, partition, "offset") DO NOTHING'
)



def _plain(doc: dict[str, Any]) -> Any:
    """JSON-compatible (datetimes as ISO text), as jsonb will give it back."""
    return orjson.loads(orjson.dumps(doc, default=str))


def _verdict(row: tuple[Any, ...]) -> Verdict:
    topic, partition, offset, rid, twin, actor, via, decision, reason, detail, old, new, dver = row
    allowed = decision == "allow"
    return Verdict(rid, twin, actor, allowed, reason, detail, via, old, new, dver, (topic, partition, offset))


class PostgresDecisionStore:
    """One connection per flow process, shared by its workers (a lock serialises them)."""

    def __init__(self, conninfo: str, *, max_attempts: int | None = None) -> None:
        self._db = Session(conninfo, max_attempts=max_attempts, name=type(self).__name__)
        self._lock = threading.Lock()

    def prior(self, request_id: str, position: tuple[str, int, int] | None) -> Verdict | None:
        def find(conn: psycopg.Connection) -> Verdict | None:
            row = None
            if position is not None:
                row = conn.execute(BY_POSITION, position).fetchone()
            if row is None:
                row = conn.execute(BY_REQUEST, (request_id, sorted(UNAUTHENTICATED))).fetchone()
            return None if row is None else _verdict(row)

        with self._lock:
            return self._db.transaction(find, f"looking up desired request {request_id}")

    def record(self, verdict: Verdict) -> None:
        v = verdict
        old, new = _plain(v.old), _plain(v.new)
        topic, partition, offset = v.position or ("", -1, -1)

        def write(conn: psycopg.Connection) -> None:
            row = append(
                conn,
                AuditEntry(
                    actor=v.actor,
                    twin_id=v.twin_id,
                    old=old,
                    new=new,
                    version=v.desired_version,
                    decision=v.decision,
                    reason=v.reason,
                    detail=v.detail,
                ),
            )
            conn.execute(
                INSERT,
                (topic, partition, offset, v.request_id, v.twin_id, v.actor, v.via, v.decision, v.reason, v.detail,
                 Jsonb(old), Jsonb(new), v.desired_version, row.id),
            )  # fmt: skip
            if not v.allowed:
                record_rejection(
                    conn,
                    twin_id=v.twin_id,
                    actor=v.actor,
                    request={**new, "old": old, "desired_version": v.desired_version, "via": v.via},
                    reason=v.reason,
                    detail=v.detail,
                    audit_id=row.id,
                )

        with self._lock:
            self._db.transaction(write, f"recording the verdict on desired request {v.request_id}")

    def resume_position(self, twin_id: str, topic: str) -> tuple[str, int, int] | None:
        """The newest decided (topic, partition, offset) of ``twin_id`` on ``topic``."""

        def find(conn: psycopg.Connection) -> tuple[str, int, int] | None:
            row = conn.execute(
                "SELECT partition, \"offset\" FROM desired_requests WHERE twin_id = %s AND topic = %s"
                " ORDER BY id DESC LIMIT 1",
                (twin_id, topic),
            ).fetchone()
            return None if row is None else (topic, row[0], row[1])

        with self._lock:
            return self._db.transaction(find, f"reading the last desired request of {twin_id}")

    def close(self) -> None:
        self._db.close()
