"""Cheapest idempotent telemetry write: COPY straight into the table, the staging path, ``unnest``.

    make bench-insert                                    # 400,000 rows in batches of 5,000
    python -m benchmarks.insert_paths --rows 100000 --no-record

Every path writes the same batches into a scratch copy of ``telemetry`` (same columns, defaults,
indexes), each in its own table, one transaction per batch, the paths alternating batch by batch
(the order rotating) so all see the same load:

* **sink** (:class:`connectors.postgres.telemetry_sink.TelemetrySink`, its own ``write``): binary
  COPY straight into the table under a savepoint; on a unique violation, roll back to the savepoint
  and take the staging path; after that the writer stages until a batch inserts every row it holds;
* **copy-first**: the same, but every batch tries the COPY first (no memory of a failed one): what
  a replayed batch costs when the failed COPY is not avoided;
* **staging** (the sink's fallback, :class:`connectors.postgres.copy_insert.CopyTable`'s staging
  COPY and move, its path before): binary COPY into a temporary table, ``INSERT … SELECT … ON
  CONFLICT DO NOTHING``;
* **unnest**: one statement, ``INSERT … SELECT * FROM unnest(%s::text[], …) ON CONFLICT DO
  NOTHING``, the columns sent as binary arrays.

Then every batch is written a second time (a recovery replay): each path must insert nothing.
Last, new batches that end with one stored row (``late dup``: the COPY fails at the batch's last
row, the worst case of a failed attempt; the row of a replay that straddles stored and new rows).
Printed: ms per batch (median) per phase, fresh rows/s, the rows each table holds, and
the load average during the run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from benchmarks.machine import append_result
from benchmarks.processes import cleaning_up, interruptible
from connectors.postgres.copy_insert import CopyInsert, CopyTable
from connectors.postgres.telemetry_sink import TELEMETRY, TelemetrySink
from operators.telemetry.ingest import TelemetryRow
from twinflow.settings import load_settings

console = Console()
COLUMNS = "twin_id, sensor, ts, value, seq, quality, source"
UNNEST_SQL = (
    "INSERT INTO {} (" + COLUMNS + ") SELECT * FROM unnest("
    "%s::text[], %s::text[], %s::timestamptz[], %s::float8[], %s::int8[], %s::int2[], %s::text[]) "
    "ON CONFLICT (twin_id, sensor, ts) DO NOTHING"
)


def batches(n_rows: int, size: int, twins: int, sensors: int, prefix: str = "ins") -> list[list[TelemetryRow]]:
    """Readings of ``twins`` twins with ``sensors`` values each, as the ingest operator makes them."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[TelemetryRow] = []
    seq = 0
    while len(rows) < n_rows:
        twin = f"{prefix}-{seq % twins}"
        ts = t0 + timedelta(milliseconds=10 * seq)
        rows.extend(TelemetryRow(twin, f"s{k}", ts, seq * 0.1 + k, seq, 0, "bench") for k in range(sensors))
        seq += 1
    rows = rows[:n_rows]
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def into(conn: psycopg.Connection, table: str) -> CopyTable:
    """The sink's table description pointed at ``table``, its staging table created."""
    spec = dataclasses.replace(TELEMETRY, table=table)
    conn.execute(spec.setup)
    return spec


def staging(conn: psycopg.Connection, table: str) -> Callable[[Sequence[TelemetryRow]], int]:
    """The sink's staging path (its staging table, COPY and move), pointed at ``table``."""
    spec = into(conn, table)

    def write(rows: Sequence[TelemetryRow]) -> int:
        with conn.transaction(), conn.cursor() as cur:
            spec.copy_rows(cur, spec.stage, rows)
            cur.execute(spec.move)
            return cur.rowcount

    return write


def sink(conn: psycopg.Connection, table: str, *, remember: bool = True) -> Callable[[Sequence[TelemetryRow]], int]:
    """The sink's own ``write`` into ``table``; ``remember=False`` forgets a failed COPY before each batch."""
    writer = TelemetrySink(conn.info.dsn)
    writer.spec = into(conn, table)

    def write(rows: Sequence[TelemetryRow]) -> int:
        if not remember:
            writer._insert = CopyInsert()
        with conn.transaction():
            return writer.write(conn, rows)

    return write


def unnest(conn: psycopg.Connection, table: str) -> Callable[[Sequence[TelemetryRow]], int]:
    statement = sql.SQL(UNNEST_SQL).format(sql.Identifier(table))

    def write(rows: Sequence[TelemetryRow]) -> int:
        cols = list(zip(*rows, strict=True))
        with conn.transaction(), conn.cursor(binary=True) as cur:
            cur.execute(statement, [list(c) for c in cols])
            return cur.rowcount

    return write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--batch", type=int, default=5000, help="rows per transaction (flow.batch_size)")
    ap.add_argument("--twins", type=int, default=200)
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument(
        "--paths", nargs="+", default=["sink", "copy-first", "staging", "unnest"],
        choices=["sink", "copy-first", "staging", "unnest"],
    )  # fmt: skip
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    conninfo = load_settings().postgres.conninfo()
    run = uuid.uuid4().hex[:6]
    data = batches(args.rows, args.batch, args.twins, args.sensors)
    late = batches(args.rows, args.batch, args.twins, args.sensors, prefix="late")
    late_dup = [[*new, stored[0]] for new, stored in zip(late, data, strict=True)]
    phases = {"fresh": data, "replay": data, "late dup": late_dup}
    paths = {
        "sink": lambda conn, t: sink(conn, t),
        "copy-first": lambda conn, t: sink(conn, t, remember=False),
        "staging": staging,
        "unnest": unnest,
    }
    tables = {name: f"bench_ins_{name.replace('-', '_')}_{run}" for name in args.paths}
    loads: list[float] = []  # 1-minute load average, sampled at every batch
    times: dict[str, dict[str, list[float]]] = {k: {phase: [] for phase in phases} for k in tables}
    inserted: dict[str, dict[str, int]] = {k: dict.fromkeys(phases, 0) for k in tables}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        try:  # the scratch tables are dropped again, also after Ctrl-C or SIGTERM
            for t in tables.values():
                like = "CREATE TABLE {} (LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
                conn.execute(sql.SQL(like).format(sql.Identifier(t)))
            writers = {name: paths[name](conn, t) for name, t in tables.items()}
            names = list(tables)
            for phase, phase_batches in phases.items():
                for i, batch in enumerate(phase_batches):
                    order = names[i % len(names) :] + names[: i % len(names)]
                    loads.append(os.getloadavg()[0])
                    for name in order:
                        t0 = time.perf_counter()
                        inserted[name][phase] += writers[name](batch)
                        times[name][phase].append(time.perf_counter() - t0)
            count = sql.SQL("SELECT count(*) FROM {}")
            held = {k: conn.execute(count.format(sql.Identifier(t))).fetchone()[0] for k, t in tables.items()}
        finally:
            with cleaning_up():
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()  # (a write broken off inside its transaction)
                for t in tables.values():
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(t)))

    load = (
        f"load average (1 min) {min(loads):.1f}–{max(loads):.1f}, mean {statistics.mean(loads):.1f}, "
        f"{os.cpu_count()} cores"
    )
    table = Table(title=f"idempotent telemetry writes, {args.rows:,} rows in batches of {args.batch:,}; {load}")
    cols = ("path", "fresh ms/batch", "fresh rows/s", "replay ms/batch", "late dup ms/batch", "inserted", "held")
    for c in cols:
        table.add_column(c, justify="right", no_wrap=c == "path")
    md = "| " + " | ".join(cols) + " |\n|---|" + "---:|" * (len(cols) - 1) + "\n"
    for name in tables:
        ms = {phase: f"{statistics.median(t) * 1000:.1f}" for phase, t in times[name].items()}
        cells = [
            name,
            ms["fresh"],
            f"{args.rows / sum(times[name]['fresh']):,.0f}",
            ms["replay"],
            ms["late dup"],
            " + ".join(f"{n:,}" for n in inserted[name].values()),
            f"{held[name]:,}",
        ]
        table.add_row(*cells)
        md += "| " + " | ".join(cells) + " |\n"
    md += f"\nms per batch: medians; inserted: fresh + replay + late dup; {load}.\n"
    console.print(table)
    expected = {"fresh": args.rows, "replay": 0, "late dup": args.rows}
    ok = all(inserted[k] == expected and held[k] == 2 * args.rows for k in tables)
    console.print("idempotent: " + ("yes: a replay inserted nothing, no stored row twice" if ok else "NO"))
    if not args.no_record:
        append_result(
            "Idempotent telemetry write: COPY into the table (fallback: staging) vs staging vs unnest",
            f"python -m benchmarks.insert_paths --rows {args.rows} --batch {args.batch} --paths {' '.join(args.paths)}",
            md,
        )
    if not ok:
        raise SystemExit("a path is not idempotent")


if __name__ == "__main__":
    with interruptible("its scratch tables are dropped"):
        main()
