"""Benchmark: how long a clean stop of the pipeline flow takes, by the twins one process holds.

    python -m benchmarks.stop_time --twins 1000 5000 20000

A stop ends the flow's input at once and Bytewax commits the epoch in progress (docs/operations.md,
"Stopping"). At that end of input Bytewax calls every key's ``on_eof`` and snapshots every key it
called: a stop pickles and stores the state of *every* twin the process holds, not only of those
the epoch touched. So its time grows with the twins per process, and past the 9 s a command has
to stop (``connectors.stopping.STOP_WITHIN_S``) a stop ends without its last commit (a restart
then replays since the last snapshot, idempotently).

For each count: ``--per-twin`` readings of each twin on topics of the run's own, the pipeline flow
tailing them with recovery on (as deployed) until every reading is in the database and the flow is
idle, then SIGTERM; reported: the time from the signal to the exit, the exit code, whether the
last epoch was committed, the size of the recovery store. The twins' anomaly model leaves its
warm-up after ``--warmup`` samples (its state then holds what a warm model holds).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from benchmarks.ingest import generate, telemetry_rows
from benchmarks.latency import TailingFlows, own_run, wait_for
from benchmarks.machine import append_result, markdown_table
from benchmarks.processes import interruptible

console = Console()
COLUMNS = ("twins", "readings", "stop s", "exit code", "last epoch committed", "recovery store MB")


def measure(twins: int, per_twin: int, sensors: int, warmup: int) -> list[str]:
    """One count: a row of :data:`COLUMNS`."""
    with own_run("stop", recovery=True, TWINFLOW_ML__ANOMALY__WARMUP=str(warmup)) as (env, settings, prefix):
        readings = twins * per_twin
        generate(env, readings, twins, sensors, prefix)
        flows = TailingFlows(env, ("pipeline",), recovery=True)
        try:
            with psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:

                def stored() -> bool:
                    flows.check_alive()
                    return telemetry_rows(db, prefix) >= readings * sensors

                if not wait_for(stored, timeout_s=120 + readings / 1000, every_s=1.0):
                    raise SystemExit(f"{twins:,} twins: not every reading reached the database")
            flows.wait_idle(timeout_s=120)
        finally:
            took = flows.stop()
        code = flows.procs["pipeline"].returncode
        committed = re.search(r"stop: epoch (\S+) committed", flows.output("pipeline"))
        store = sum(p.stat().st_size for p in Path(env["TWINFLOW_FLOW__RECOVERY_DIR"]).rglob("part-*.sqlite3"))
    return [
        f"{twins:,}",
        f"{readings:,}",
        f"{took:.2f}",
        str(code),
        f"yes (epoch {committed.group(1)})" if committed else "no",
        f"{store / 2**20:,.0f}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twins", type=int, nargs="+", default=[1000, 5000, 20000], help="twins per run")
    ap.add_argument("--per-twin", type=int, default=40, help="readings per twin")
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=20, help="the anomaly model's warm-up (samples)")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    rows = [measure(n, args.per_twin, args.sensors, args.warmup) for n in args.twins]
    table = Table(*COLUMNS, title="A clean stop of the pipeline flow (one process, recovery on)")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if not args.no_record:
        body = markdown_table(COLUMNS, rows)
        command = (
            f"python -m benchmarks.stop_time --twins {' '.join(map(str, args.twins))} --per-twin {args.per_twin} "
            f"--sensors {args.sensors} --warmup {args.warmup}"
        )
        append_result("A clean stop of the pipeline flow, by twins per process", command, body)


if __name__ == "__main__":
    with interruptible():
        main()
