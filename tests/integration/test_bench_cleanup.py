"""A benchmark's cleanup leaves the development database's indexes as small as its rows need, and an
interrupted benchmark leaves nothing behind."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg import sql

from benchmarks.cleanup import compact_indexes, delete_run_rows
from benchmarks.e2e import RUN_TABLES
from connectors.kafka.clients import client_config

pytestmark = pytest.mark.integration


def _index(db: psycopg.Connection, table: str) -> tuple[int, int]:
    """(relfilenode, bytes) of the table's primary key index: a rebuild gives it a new file."""
    row = db.execute(
        "SELECT c.relfilenode, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize(("run_rows", "other_rows", "rebuilt"), [(20_000, 100, True), (50, 5_000, False)])
def test_a_table_the_run_made_up_a_share_of_gets_its_index_rebuilt(stack_settings, run_rows, other_rows, rebuilt):
    conninfo, table, prefix = stack_settings.postgres.conninfo(), f"cleanup_probe_{uuid.uuid4().hex[:8]}", "run1"
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (twin_id text PRIMARY KEY, pad text)")
        try:
            db.execute(
                f"INSERT INTO {table} SELECT %s || g, repeat('x', 40) FROM generate_series(1, %s) g",
                (f"{prefix}-", run_rows),
            )
            db.execute(f"INSERT INTO {table} SELECT 'other-' || g, '' FROM generate_series(1, %s) g", (other_rows,))
            before = _index(db, table)

            delete_run_rows(conninfo, [table], prefix)

            after = _index(db, table)
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (other_rows,)
            assert (after[0] != before[0]) is rebuilt, (before, after)
            if rebuilt:  # the rows that stay need a fraction of the index the run's rows had grown
                assert after[1] < before[1] / 10, (before, after)
        finally:
            db.execute(f"DROP TABLE {table}")


def test_make_bench_starts_from_compact_indexes(stack_settings):
    """``compact_indexes`` rebuilds a table's indexes and names it when earlier deletes had bloated them."""
    conninfo, table = stack_settings.postgres.conninfo(), f"cleanup_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (twin_id text PRIMARY KEY, pad text)")
        try:
            db.execute(f"INSERT INTO {table} SELECT 'run-' || g, repeat('x', 40) FROM generate_series(1, 20000) g")
            db.execute(f"DELETE FROM {table} WHERE twin_id <> 'run-1'")
            db.execute(f"VACUUM {table}")  # dead rows gone, the index as large as before

            bloated = compact_indexes(conninfo, [table])
            again = compact_indexes(conninfo, [table])

            assert len(bloated) == 1 and bloated[0].startswith(f"{table}: "), bloated
            assert again == []  # nothing left to shrink
            assert db.execute(f"SELECT twin_id FROM {table}").fetchall() == [("run-1",)]
        finally:
            db.execute(f"DROP TABLE {table}")


def _flows_of(bench: psutil.Process) -> list[psutil.Process]:
    """The benchmark's flow processes (``twinflow run …``) that have started."""
    found = []
    for child in bench.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "run" in child.cmdline() and "twinflow.cli.main" in child.cmdline():
                found.append(child)
    return found


def _in_session(sid: int) -> list[psutil.Process]:
    """Processes of session ``sid`` that still run (a benchmark started with ``start_new_session``)."""
    left = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
    return left


def test_an_interrupted_benchmark_leaves_nothing_behind(stack_settings):
    """SIGTERM to a benchmark's process group (as ``timeout`` and supervisors send it; Ctrl-C sends
    SIGINT the same way) once its flows run and have written rows: it says it was interrupted, no
    traceback, and its flows, topics, rows and recovery folder are gone (benchmarks.latency: the
    shared ``own_run`` and ``TailingFlows`` of e2e, fleet and stop_time)."""
    cmd = [sys.executable, "-m", "benchmarks.latency", "--rate", "20", "--seconds", "30", "--twins", "3"]
    cmd += ["--flow", "pipeline", "--flow", "alerts", "--recovery"]
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        proc, deadline = psutil.Process(bench.pid), time.monotonic() + 60
        while len(flows := _flows_of(proc)) < 2:
            assert bench.poll() is None and time.monotonic() < deadline, bench.communicate()
            time.sleep(0.2)
        env = flows[0].environ()
        topic_prefix = env["TWINFLOW_TOPICS__RAW"].removesuffix("telemetry.raw")  # lat.<run>.
        prefix, recovery = "lat" + topic_prefix.split(".")[1], Path(env["TWINFLOW_FLOW__RECOVERY_DIR"])
        conninfo = stack_settings.postgres.conninfo()
        with psycopg.connect(conninfo, autocommit=True) as db:
            rows = "SELECT count(*) FROM telemetry WHERE twin_id LIKE %s"
            while db.execute(rows, (prefix + "-%",)).fetchone()[0] == 0:
                assert bench.poll() is None and time.monotonic() < deadline, bench.communicate()
                time.sleep(0.2)

            os.killpg(bench.pid, signal.SIGTERM)
            out, err = bench.communicate(timeout=60)

            assert bench.returncode == 1, out[-2000:] + err[-2000:]
            assert "interrupted: nothing recorded" in err and "Traceback" not in err, err[-3000:]
            assert not _in_session(bench.pid), "processes of the benchmark's session are left"
            topics = AdminClient(client_config(stack_settings)).list_topics(timeout=10).topics
            assert not [t for t in topics if t.startswith(topic_prefix)]
            for table in RUN_TABLES:
                count = sql.SQL("SELECT count(*) FROM {} WHERE twin_id LIKE %s").format(sql.Identifier(table))
                assert db.execute(count, (prefix + "-%",)).fetchone() == (0,), table
            assert not recovery.exists()
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
