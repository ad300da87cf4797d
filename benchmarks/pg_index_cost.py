"""PostgreSQL's CPU per telemetry row by index layout: COPY the same batches into copies of ``telemetry``.

    python -m benchmarks.pg_index_cost --rows 300000 --preload 1000000 --batch 5000

Each layout is a fresh table ``LIKE telemetry INCLUDING DEFAULTS`` (so ``ingested_at`` keeps its
``clock_timestamp()`` default) with its own indexes, preloaded with earlier readings (not measured),
checkpointed, then written by binary COPY in batches (one transaction each, as the sink does). The
CPU is the backend's user + system time (``/proc/<pid>/stat``) and all the server's processes'
(WAL writer, checkpointer, … included), per row. The rows are the pipeline's shape: ``--twins``
twins × ``--sensors`` sensors, one reading per twin per second, in time order.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psutil
import psycopg
from psycopg import sql

from benchmarks.processes import cleaning_up, interruptible, usage
from connectors.postgres.copy_insert import copy_binary
from connectors.postgres.telemetry_sink import TELEMETRY
from twinflow.settings import load_settings

COPY_TYPES = TELEMETRY.types[: TELEMETRY.short]  # the plain rows the pipeline writes
# layout -> index definitions ({} is the table)
LAYOUTS: dict[str, tuple[str, ...]] = {
    "none": (),
    "pk(twin,sensor,ts)": ("ALTER TABLE {} ADD PRIMARY KEY (twin_id, sensor, ts)",),
    "pk(twin,sensor,ts)+twin_ts": (
        "ALTER TABLE {} ADD PRIMARY KEY (twin_id, sensor, ts)",
        "CREATE INDEX ON {} (twin_id, ts DESC)",
    ),
    "main: pk(twin,sensor,ts)+twin_ts+brin": (
        "ALTER TABLE {} ADD PRIMARY KEY (twin_id, sensor, ts)",
        "CREATE INDEX ON {} (twin_id, ts DESC)",
        "CREATE INDEX ON {} USING brin (ts) WITH (pages_per_range = 32)",
    ),
    "pk(twin,ts,sensor)": ("ALTER TABLE {} ADD PRIMARY KEY (twin_id, ts, sensor)",),
    "0090: pk(twin,ts,sensor)+brin": (
        "ALTER TABLE {} ADD PRIMARY KEY (twin_id, ts, sensor)",
        "CREATE INDEX ON {} USING brin (ts) WITH (pages_per_range = 32)",
    ),
    "0090, ingested_at statement_timestamp()": (  # a stable default: COPY inserts in multi-row batches
        "ALTER TABLE {} ADD PRIMARY KEY (twin_id, ts, sensor)",
        "CREATE INDEX ON {} USING brin (ts) WITH (pages_per_range = 32)",
        "ALTER TABLE {} ALTER COLUMN ingested_at SET DEFAULT statement_timestamp()",
    ),
}


def readings(start: datetime, n_rows: int, twins: int, sensors: int) -> Iterator[tuple]:
    """``n_rows`` telemetry rows, one reading (``sensors`` rows) per twin per second from ``start``."""
    i = 0
    second = 0
    while True:
        ts = start + timedelta(seconds=second)
        for t in range(twins):
            for s in range(sensors):
                if i == n_rows:
                    return
                yield (f"twin-{t:05d}", f"s{s}", ts, float(i % 997), second, 0, "bench")
                i += 1
        second += 1


def run(conn: psycopg.Connection, layout: str, args: argparse.Namespace) -> tuple[float, float, float]:
    table = sql.Identifier("bench_idx")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE telemetry INCLUDING DEFAULTS)").format(table))
    for ddl in LAYOUTS[layout]:
        conn.execute(sql.SQL(ddl).format(table))
    copy = sql.SQL("COPY {} (twin_id, sensor, ts, value, seq, quality, source) FROM STDIN (FORMAT BINARY)")
    copy = copy.format(table)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = list(readings(start, args.preload + args.rows, args.twins, args.sensors))
    with conn.transaction(), conn.cursor() as cur:
        for i in range(0, args.preload, 50_000):
            copy_binary(cur, copy, COPY_TYPES, rows[i : i + 50_000])
    conn.execute("VACUUM ANALYZE bench_idx")
    conn.execute("CHECKPOINT")
    pid = conn.info.backend_pid
    b0, s0, w0 = usage(pid, children=False)[0], usage(args.postmaster)[0], time.perf_counter()
    with conn.cursor() as cur:
        for i in range(args.preload, args.preload + args.rows, args.batch):
            with conn.transaction():
                copy_binary(cur, copy, COPY_TYPES, rows[i : i + args.batch])
    b1, s1, w1 = usage(pid, children=False)[0], usage(args.postmaster)[0], time.perf_counter()
    size = conn.execute("SELECT pg_indexes_size('bench_idx')").fetchone()[0]
    conn.execute(sql.SQL("DROP TABLE {}").format(table))
    per = 1e6 / args.rows
    return (b1 - b0) * per, (s1 - s0) * per, (w1 - w0) * per, size / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--preload", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--twins", type=int, default=200)
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--layout", action="append", choices=list(LAYOUTS))
    ap.add_argument("--postmaster", type=int, help="the postmaster's pid (default: the backend's parent)")
    args = ap.parse_args()
    settings = load_settings()  # the stack's superuser: CHECKPOINT
    password = settings.stack.postgres_superuser_password.get_secret_value()
    conninfo = settings.postgres.conninfo(user="postgres", password=password)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if args.postmaster is None:  # a local server: the backend's parent
            args.postmaster = psutil.Process(conn.info.backend_pid).ppid()
        print(f"{'layout':42} {'backend µs/row':>14} {'server µs/row':>14} {'wall µs/row':>12} {'index MB':>9}  load")
        try:
            for _ in range(args.repeat):
                for layout in args.layout or LAYOUTS:
                    backend, server, wall, mb = run(conn, layout, args)
                    load = os.getloadavg()[0]
                    print(f"{layout:42} {backend:14.2f} {server:14.2f} {wall:12.2f} {mb:9.1f}  {load:.1f}", flush=True)
        finally:  # the scratch table goes, also after Ctrl-C or SIGTERM (a COPY broken off rolled back first)
            with cleaning_up():
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                conn.execute("DROP TABLE IF EXISTS bench_idx")


if __name__ == "__main__":
    with interruptible("its scratch table is dropped"):
        main()
