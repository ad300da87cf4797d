"""Desired-state gate on the real PostgreSQL and Kafka: decisions are audited in a hash chain,
refusals are recorded (table + topic), the trail is append-only, and tampering is reported
by `twinflow audit verify`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psycopg
import pytest

from connectors.desired_gate import PostgresDecisionStore
from connectors.postgres.audit import AuditEntry, append, verify
from operators.twin.desired_gate import Verdict
from tests.db_helpers import superuser_conninfo

pytestmark = pytest.mark.integration

def audit_verify(s, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWINFLOW_POSTGRES__DBNAME": s.postgres.dbname}
    return subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "audit", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_decision_store_audits_allows_and_records_refusals(private_db):
    s = private_db
    store = PostgresDecisionStore(s.postgres.conninfo(), max_attempts=3)
    try:
        ok = Verdict("req-allow-1", "pump-1", "ann", True, "allowed", "rpm_setpoint by rule ops", None,
                     {"values": {"rpm_setpoint": 1000}}, {"values": {"rpm_setpoint": 1200}}, 4, ("twin.desired", 0, 7))
        no = Verdict("req-deny-1", "pump-1", "eve", False, "out_of_range", "rpm_setpoint=9000 is outside [0, 3000]",
                     None, {"values": {"rpm_setpoint": 1200}}, {"values": {"rpm_setpoint": 9000}}, 5,
                     ("twin.desired", 0, 8))  # fmt: skip
        store.record([ok, no])  # one transaction, in order
        by_pos, by_rid = store.recall(["req-deny-1", "req-allow-1", "req-other"], [("twin.desired", 0, 8)])
        assert by_pos == {("twin.desired", 0, 8): no}  # the same record: recalled as it was
        assert by_rid["req-allow-1"].position == ("twin.desired", 0, 7) and "req-other" not in by_rid
        assert store.recall([], []) == ({}, {})
        # A state at desired version 5 includes the allowed request decided at 4; the denied one changed nothing.
        assert store.resume_position("pump-1", "twin.desired", 5) == ("twin.desired", 0, 7)
        assert store.resume_position("pump-1", "twin.desired", 4) is None
    finally:
        store.close()
    with psycopg.connect(s.postgres.conninfo()) as conn:
        audit = conn.execute(
            "SELECT actor, twin_id, old, new, version, decision, reason FROM desired_audit ORDER BY id"
        ).fetchall()
        rejected = conn.execute("SELECT actor, reason, request, audit_id FROM desired_rejections").fetchall()
    assert audit == [
        ("ann", "pump-1", {"values": {"rpm_setpoint": 1000}}, {"values": {"rpm_setpoint": 1200}}, 4, "allow",
         "allowed"),
        ("eve", "pump-1", {"values": {"rpm_setpoint": 1200}}, {"values": {"rpm_setpoint": 9000}}, 5, "deny",
         "out_of_range"),
    ]  # fmt: skip
    assert len(rejected) == 1 and rejected[0][:2] == ("eve", "out_of_range")
    assert rejected[0][2]["values"] == {"rpm_setpoint": 9000}
    res = audit_verify(s)
    assert res.returncode == 0 and "2 rows" in res.stdout, res.stdout + res.stderr


def _fill(s, n: int) -> list[int]:
    with psycopg.connect(s.postgres.conninfo()) as conn:
        return [
            append(
                conn,
                AuditEntry(
                    actor="ann",
                    twin_id=f"pump-{i}",
                    old={"rpm": i},
                    new={"rpm": i + 1, "note": "ünïcode ✓", "big": 1e300, "nested": {"b": [1, 2.5]}},
                    version=i,
                    decision="allow",
                    reason="allowed",
                ),
            ).id
            for i in range(n)
        ]


def test_audit_rows_cannot_be_updated_or_deleted_by_the_application(private_db):
    ids = _fill(private_db, 2)
    with psycopg.connect(private_db.postgres.conninfo()) as conn:
        for stmt in (
            "UPDATE desired_audit SET reason = 'x' WHERE id = %s",
            "DELETE FROM desired_audit WHERE id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(stmt, (ids[0],))
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE desired_audit CASCADE")
        conn.rollback()


def test_editing_an_audit_row_in_the_database_is_reported(private_db):
    ids = _fill(private_db, 5)
    assert audit_verify(private_db).returncode == 0
    victim = ids[2]
    # A superuser bypasses the append-only triggers and rewrites history.
    with psycopg.connect(superuser_conninfo(private_db, private_db.postgres.dbname), autocommit=True) as su:
        su.execute("SET session_replication_role = replica")
        su.execute("UPDATE desired_audit SET new = '{\"rpm\": 9999}' WHERE id = %s", (victim,))
    res = audit_verify(private_db)
    assert res.returncode == 1
    assert f"row {victim}" in res.stderr and "modified" in res.stderr, res.stderr


def test_removing_rows_is_reported(private_db):
    ids = _fill(private_db, 4)
    head = verify(psycopg.connect(private_db.postgres.conninfo())).head
    with psycopg.connect(superuser_conninfo(private_db, private_db.postgres.dbname), autocommit=True) as su:
        su.execute("SET session_replication_role = replica")
        su.execute("DELETE FROM desired_audit WHERE id = %s", (ids[3],))  # the newest: only the head shows it
        assert audit_verify(private_db).returncode == 0
        res = audit_verify(private_db, "--expect-head", head)
        assert res.returncode == 1 and "expected" in res.stderr, res.stderr
        su.execute("DELETE FROM desired_audit WHERE id = %s", (ids[1],))
    res = audit_verify(private_db)
    assert res.returncode == 1 and f"row {ids[2]} does not link to row {ids[0]}" in res.stderr, res.stderr


def test_concurrent_writers_keep_one_linear_chain(private_db):
    threads = [threading.Thread(target=_fill, args=(private_db, 15)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(private_db.postgres.conninfo()) as conn:
        result = verify(conn)
    assert result.broken is None and result.rows == 60
