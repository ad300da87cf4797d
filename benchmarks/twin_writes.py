"""PostgreSQL CPU of the twin sink's writes: the sink's ``unnest`` path vs COPY into staging tables.

    python -m benchmarks.twin_writes --versions 20000 --batch 20 --batch 200

Builds ``--versions`` twin versions as the reconciler makes them (200 twins, 4 sensors, a version
per reading) and writes them in batches of ``--batch`` versions, one transaction each, two ways,
alternating (three rounds, so both see the same load): **sink** (:class:`TwinSink`: one
``INSERT … SELECT … FROM unnest(…)`` with the columns as binary arrays) and **staging** (its path
before: binary COPY into ``ON COMMIT DELETE ROWS`` temporary tables, then the same ``INSERT …
SELECT``). Printed per path and batch size: the minimum over the rounds of the PostgreSQL backend's
CPU (from /proc: the local stack) and of the client's CPU, in ms per 1,000 versions, and a digest of
the stored rows (equal = same rows). Small batches are the tailing regime (a few versions per twin
and batch). The rows are written under twin ids of their own and deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psutil
import psycopg
from psycopg import sql

from benchmarks.cleanup import delete_rows, delete_run_rows
from benchmarks.machine import append_result
from benchmarks.processes import cleaning_up, interruptible
from connectors.postgres.copy_insert import copy_binary
from connectors.postgres.twin_sink import HISTORY_MOVE, TwinSink
from operators.records.twin import Reported
from operators.twin.reconcile import Reconciler
from operators.twin.state import StateChange, TwinState
from operators.twin.sync_strategy import TwinPolicy
from twinflow.settings import load_settings

STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS bench_history_stage (twin_id text, version bigint, event_time timestamptz,"
    " document bytea) ON COMMIT DELETE ROWS"
)
STAGED_MOVE = HISTORY_MOVE.replace(
    "unnest(%b::text[], %b::int8[], %b::timestamptz[], %b::bytea[]) AS s (twin_id, version, event_time, document)",
    "bench_history_stage",
)
DIGEST = (
    "SELECT count(*), sum(hashtext(h::text)) FROM (SELECT twin_id, version, desired_version, event_time, status,"
    " mode, learn, reported, desired, delta, conflicts, commands, consistency_score, sync_latency_ms,"
    " last_sync_time, desync_since, change FROM twin_state_history WHERE twin_id LIKE %s) AS h"
)


def versions(n: int, prefix: str, twins: int = 200) -> list[StateChange]:
    """``n`` versions of ``twins`` twins: readings of 4 sensors, each a new version."""
    rec = Reconciler(TwinPolicy.model_validate({"defaults": {"tolerance": 1.0}}))
    rnd = random.Random(1)
    states = [TwinState(f"{prefix}-{i:04d}") for i in range(twins)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out: list[StateChange] = []
    for k in range((n + twins - 1) // twins):
        for st in states:
            values = {s: rnd.uniform(0, 100) for s in ("temp", "pressure", "vibration", "current")}
            out.extend(c for c in rec.apply(st, Reported(t0 + timedelta(seconds=k), k, "bench", values)))
    return [c for c in out if isinstance(c, StateChange)][:n]


def staged(conn: psycopg.Connection, changes: Sequence[StateChange]) -> None:
    with conn.cursor() as cur:
        rows = ((c.twin_id, c.version, c.at, c.document) for c in changes)
        copy_binary(
            cur, "COPY bench_history_stage FROM STDIN (FORMAT BINARY)", ["text", "int8", "timestamptz", "bytea"], rows
        )
        cur.execute(STAGED_MOVE)


def run(conninfo: str, path: str, changes: list[StateChange], batch: int, prefix: str) -> tuple[float, float, tuple]:
    """(server ms, client ms per 1k versions, digest of the rows) of one path writing ``changes``."""
    sink = TwinSink(conninfo)
    with psycopg.connect(conninfo) as conn:
        conn.execute(STAGE)
        conn.commit()
        backend = psutil.Process(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        server0, client0 = sum(backend.cpu_times()[:2]), time.process_time()
        for i in range(0, len(changes), batch):
            if path == "sink":
                sink.write(conn, changes[i : i + batch])
            else:
                staged(conn, changes[i : i + batch])
            conn.commit()
        server, client = sum(backend.cpu_times()[:2]) - server0, time.process_time() - client0
        digest = tuple(conn.execute(DIGEST, (f"{prefix}-%",)).fetchone())  # type: ignore[arg-type]
        clean(conn, prefix)
    per_k = 1e6 / len(changes)
    return server * per_k, client * per_k, digest


def clean(conn: psycopg.Connection, prefix: str) -> None:
    """Delete the benchmark's rows (twin_state_history is append-only: :func:`delete_rows` turns its
    trigger off meanwhile)."""
    with conn.transaction():
        delete_rows(conn, "twin_state_history", sql.SQL("twin_id LIKE %s"), (f"{prefix}-%",))


def rounds(
    conninfo: str, changes: list[StateChange], batches: list[int], n: int, prefix: str, loads: list[float]
) -> dict[int, dict[str, list]]:
    """Per batch size and path, the best (server ms, client ms) of ``n`` rounds and the rows' digest;
    the 1-minute load average after each run is appended to ``loads``."""
    out: dict[int, dict[str, list]] = {}
    for batch in batches:
        best = out.setdefault(batch, {})
        for _ in range(n):
            for path in ("staging", "sink"):
                server, client, digest = run(conninfo, path, changes, batch, prefix)
                old = best.get(path)
                best[path] = [min(server, old[0]) if old else server, min(client, old[1]) if old else client, digest]
                loads.append(os.getloadavg()[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=20000)
    ap.add_argument("--batch", type=int, action="append", help="versions per transaction (repeatable)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    conninfo = load_settings().postgres.conninfo()
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    changes = versions(args.versions, prefix)
    lines = [
        "| batch | path | PostgreSQL ms per 1k versions | client ms per 1k | rows, digest |",
        "|---:|---|---:|---:|---|",
    ]
    loads = []
    try:  # an interrupted round's history rows go again (its connection is closed by then)
        measured = rounds(conninfo, changes, args.batch or [20, 200], args.rounds, prefix, loads)
    finally:
        with cleaning_up():
            delete_run_rows(conninfo, ("twin_state_history",), prefix)
    for batch, best in measured.items():
        same = best["sink"][2] == best["staging"][2]
        for path, (server, client, digest) in best.items():
            lines.append(
                f"| {batch} | {path} | {server:.1f} | {client:.1f} | {digest[0]:,}, {'same' if same else digest[1]} |"
            )
    body = "\n".join(lines) + f"\n\nLoad average (1 min) during the runs: {min(loads):.1f}–{max(loads):.1f}."
    print(body)
    if not args.no_record:
        command = "python -m benchmarks.twin_writes " + " ".join(f"--batch {b}" for b in args.batch or [20, 200])
        append_result("Twin sink writes: unnest vs COPY into staging tables", command, body)


if __name__ == "__main__":
    with interruptible("its rows are deleted"):
        main()
