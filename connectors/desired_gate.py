"""The gate's decision store on PostgreSQL: the hash-chained audit, refusals and request verdicts.

:class:`PostgresDecisionStore` is the :class:`operators.twin.desired_gate.DecisionStore` of the twin
flow. ``record`` appends a batch of verdicts, in order, to ``desired_audit`` (the hash chain,
:mod:`connectors.postgres.audit`), to ``desired_requests`` (their Kafka positions and request ids:
the memory for replays and restarts) and, the denied ones, to ``desired_rejections`` — one statement
per table, in one transaction, committed before it returns (retried on connection loss; the flow waits).
``recall`` finds earlier verdicts by Kafka position or (authenticated verdicts only) request id, for a
whole batch in one query.
``resume_position`` is the newest record whose change a twin's stored state includes (a twin resumed from
the database skips records up to it and decides the later ones again: the same verdicts).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from connectors.postgres.audit import AuditEntry, append_many
from connectors.postgres.session import Session
from operators.twin.desired_gate import UNAUTHENTICATED, Position, Recalled, Verdict

_COLS = (
    'topic, partition, "offset", request_id, twin_id, actor, via, decision, reason, detail, old, new, desired_version'
)
# The verdicts of these Kafka records, and the first verdict that claimed each of these request ids
# (records whose signer was not established never claim one).
RECALL = (
    "SELECT true, " + _COLS + " FROM desired_requests WHERE (topic, partition, \"offset\") IN"
    " (SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[]))"
    " UNION ALL (SELECT DISTINCT ON (request_id) false, " + _COLS + " FROM desired_requests"
    " WHERE request_id = ANY(%s) AND reason <> ALL(%s) ORDER BY request_id, id)"
)
INSERT = (
    "INSERT INTO desired_requests (" + _COLS + ", audit_id) SELECT * FROM unnest(%s::text[], %s::integer[],"
    " %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::jsonb[], %s::jsonb[], %s::bigint[], %s::bigint[])"
    ' ON CONFLICT (topic, partition, "offset") DO NOTHING'
)
REJECT = (
    "INSERT INTO desired_rejections (twin_id, actor, request, reason, detail, audit_id)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::jsonb[], %s::text[], %s::text[], %s::bigint[])"
)


def _plain(doc: dict[str, Any]) -> Any:
    """JSON-compatible (datetimes as ISO text), as jsonb will give it back."""
    return orjson.loads(orjson.dumps(doc, default=str))


def _verdict(row: tuple[Any, ...]) -> Verdict:
    topic, partition, offset, rid, twin, actor, via, decision, reason, detail, old, new, dver = row
    allowed = decision == "allow"
    return Verdict(rid, twin, actor, allowed, reason, detail, via, old, new, dver, (topic, partition, offset))


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column (the arrays ``unnest`` takes)."""
    return [list(c) for c in zip(*rows, strict=True)]


class PostgresDecisionStore:
    """One connection per flow process, shared by its workers (a lock serialises them)."""

    def __init__(self, conninfo: str, *, max_attempts: int | None = None) -> None:
        self._db = Session(conninfo, max_attempts=max_attempts, name=type(self).__name__)
        self._lock = threading.Lock()

    def recall(self, request_ids: Collection[str], positions: Collection[Position]) -> Recalled:
        """The verdicts recorded for ``positions``, and the first claim of each of ``request_ids``: one query."""
        where = _columns(list(positions)) if positions else [[], [], []]

        def find(conn: psycopg.Connection) -> Recalled:
            rows = conn.execute(RECALL, (*where, list(request_ids), sorted(UNAUTHENTICATED))).fetchall()
            by_position: dict[Position, Verdict] = {}
            by_request: dict[str, Verdict] = {}
            for by_pos, *row in rows:
                v = _verdict(tuple(row))
                if by_pos:
                    by_position[v.position] = v  # type: ignore[index]
                else:
                    by_request[v.request_id] = v
            return by_position, by_request

        with self._lock:
            return self._db.transaction(find, f"looking up {len(request_ids)} desired request(s)")

    def record(self, verdicts: Sequence[Verdict]) -> None:
        """Audit ``verdicts`` (in order), remember them and store the refusals: one transaction."""
        if not verdicts:
            return
        docs = [(_plain(v.old), _plain(v.new)) for v in verdicts]
        entries = [
            AuditEntry(v.actor, v.twin_id, new, v.decision, v.reason, old, v.desired_version, v.detail)
            for v, (old, new) in zip(verdicts, docs, strict=True)
        ]

        def write(conn: psycopg.Connection) -> None:
            audit = append_many(conn, entries)
            requests, refusals = [], []
            for v, (old, new), row in zip(verdicts, docs, audit, strict=True):
                topic, partition, offset = v.position or ("", -1, -1)
                requests.append((topic, partition, offset, v.request_id, v.twin_id, v.actor, v.via, v.decision,
                                 v.reason, v.detail, Jsonb(old), Jsonb(new), v.desired_version, row.id))  # fmt: skip
                if not v.allowed:
                    request = {**new, "old": old, "desired_version": v.desired_version, "via": v.via}
                    refusals.append((v.twin_id, v.actor, Jsonb(request), v.reason, v.detail, row.id))
            conn.execute(INSERT, _columns(requests))
            if refusals:
                conn.execute(REJECT, _columns(refusals))

        with self._lock:
            self._db.transaction(write, f"recording {len(verdicts)} verdict(s) on desired requests")

    def resume_position(self, twin_id: str, topic: str, desired_version: int) -> Position | None:
        """The newest record of ``twin_id`` on ``topic`` whose change a state at ``desired_version`` includes:
        its newest allowed verdict decided below that desired version."""
        if desired_version <= 0:
            return None

        def find(conn: psycopg.Connection) -> Position | None:
            row = conn.execute(
                "SELECT partition, \"offset\" FROM desired_requests WHERE twin_id = %s AND topic = %s"
                " AND decision = 'allow' AND desired_version < %s ORDER BY id DESC LIMIT 1",
                (twin_id, topic, desired_version),
            ).fetchone()
            return None if row is None else (topic, row[0], row[1])

        with self._lock:
            return self._db.transaction(find, f"reading the last desired request applied to {twin_id}")

    def close(self) -> None:
        self._db.close()
