"""The hash-chained audit trail of desired-state decisions (table ``desired_audit``, migration 0020).

Every row stores ``prev_hash`` (the hash of the row before it, or 64 zeros for the first)
and ``hash = sha256(canonical content)``, where the canonical content is the compact,
key-sorted JSON of ``[id, at (µs since epoch), actor, twin_id, old, new, version, decision,
reason, detail, prev_hash]``. Appends are serialised with a transaction-scoped advisory lock,
so the chain is linear even with many writers. ``old``/``new`` are normalised through jsonb
before hashing, so the hash is computed from exactly what a later reader gets back.

Usage::

    with psycopg.connect(conninfo) as conn:
        append(conn, AuditEntry(actor="ann", twin_id="pump-1", old={...}, new={...}, version=7,
                                decision="allow", reason="allowed"))
        problem = verify(conn)          # None when the chain is intact
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GENESIS = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Any constant works; it only has to be the same for every writer of this table.
_LOCK_KEY = 0x7477696E666C6F77  # "twinflow"


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    twin_id: str
    new: dict[str, Any]
    decision: str  # allow | deny
    reason: str
    old: dict[str, Any] | None = None
    version: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    twin_id: str
    old: Any
    new: Any
    version: int | None
    decision: str
    reason: str
    detail: str
    prev_hash: str
    hash: str

    def content_hash(self) -> str:
        return row_hash(
            self.id,
            self.at,
            self.actor,
            self.twin_id,
            self.old,
            self.new,
            self.version,
            self.decision,
            self.reason,
            self.detail,
            self.prev_hash,
        )


def row_hash(
    id: int,
    at: datetime,
    actor: str,
    twin_id: str,
    old: Any,
    new: Any,
    version: int | None,
    decision: str,
    reason: str,
    detail: str,
    prev_hash: str,
) -> str:
    """sha256 of the row's canonical JSON (see the module docstring)."""
    micros = (at - _EPOCH) // _MICRO
    canonical = json.dumps(
        [id, micros, actor, twin_id, old, new, version, decision, reason, detail, prev_hash],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(conn: psycopg.Connection, entry: AuditEntry) -> AuditRow:
    """Append one entry to the chain in its own transaction (or the caller's, if one is open)."""
    return append_many(conn, [entry])[0]


def append_many(conn: psycopg.Connection, entries: Sequence[AuditEntry]) -> list[AuditRow]:
    """Append entries to the chain, in order, with one INSERT (in a transaction of its own or the caller's).

    Three round trips whatever their number: the lock, the ids and the jsonb-normalised documents
    with the chain's head, the INSERT. The rows share one ``at``."""
    if not entries:
        return []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        docs = [Jsonb([None if e.old is None else e.old, e.new]) for e in entries]
        fetched = conn.execute(
            "SELECT nextval(pg_get_serial_sequence('desired_audit', 'id')), clock_timestamp(), d.doc,"
            " (SELECT hash FROM desired_audit ORDER BY id DESC LIMIT 1)"
            " FROM unnest(%s::jsonb[]) WITH ORDINALITY AS d(doc, n) ORDER BY d.n",
            (docs,),
        ).fetchall()
        out: list[AuditRow] = []
        prev = fetched[0][3] or GENESIS
        at = fetched[0][1]
        for entry, (id_, _, (old, new), _) in zip(entries, fetched, strict=True):
            row = AuditRow(
                id_,
                at,
                entry.actor,
                entry.twin_id,
                old,
                new,
                entry.version,
                entry.decision,
                entry.reason,
                entry.detail,
                prev,
                "",
            )
            prev = row.content_hash()
            out.append(AuditRow(**{**row.__dict__, "hash": prev}))
        columns = list(zip(*[_columns(r) for r in out], strict=True))
        conn.execute(
            "INSERT INTO desired_audit (id, at, actor, twin_id, old, new, version, decision, reason, detail,"
            " prev_hash, hash) SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[],"
            " %s::jsonb[], %s::jsonb[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])",
            [list(c) for c in columns],
        )
    return out


def _columns(row: AuditRow) -> tuple[Any, ...]:
    old = None if row.old is None else Jsonb(row.old)
    return (row.id, row.at, row.actor, row.twin_id, old, Jsonb(row.new), row.version, row.decision, row.reason,
            row.detail, row.prev_hash, row.hash)  # fmt: skip


def rows(conn: psycopg.Connection, batch: int = 1000) -> Iterator[AuditRow]:
    """Every audit row in chain order, streamed."""
    with conn.cursor(name="twinflow_audit_rows") as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT id, at, actor, twin_id, old, new, version, decision, reason, detail, prev_hash, hash"
            " FROM desired_audit ORDER BY id"
        )
        for rec in cur:
            yield AuditRow(*rec)


@dataclass(frozen=True)
class Break:
    """The first broken link: which row, and what is wrong with it."""

    row_id: int
    problem: str


@dataclass(frozen=True)
class VerifyResult:
    rows: int
    head: str
    broken: Break | None


def verify(conn: psycopg.Connection) -> VerifyResult:
    """Recompute every row's hash and link; report the first break."""
    prev_hash, prev_id, n = GENESIS, None, 0
    with conn.transaction():
        for row in rows(conn):
            n += 1
            if row.prev_hash != prev_hash:
                after = f"row {prev_id}" if prev_id is not None else "the start of the chain"
                return VerifyResult(
                    n,
                    prev_hash,
                    Break(row.id, f"row {row.id} does not link to {after}: a row was removed or inserted"),
                )
            if row.content_hash() != row.hash:
                return VerifyResult(
                    n,
                    prev_hash,
                    Break(row.id, f"row {row.id} was modified: its content does not match its hash"),
                )
            prev_hash, prev_id = row.hash, row.id
    return VerifyResult(n, prev_hash, None)


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
