"""Benchmark: latency by the twins one pipeline process holds, at one input rate, recovery on.

    python -m benchmarks.fleet --rate 2000 --twins 200 1000 2000 5000
    python -m benchmarks.fleet --rate 2000 --twins 200 1000 2000 5000 --telemetry-apart

The same readings per second spread over more twins cost more: a polled batch holds fewer readings
per twin (every step's per-twin work is paid for fewer readings), every twin's event-time windows
close on their own clock (window rows grow with the twins, not with the readings), and at the end of
every epoch (``flow.snapshot_interval_s``) Bytewax pickles and stores the state of every twin the
epoch touched, in the worker's thread: the flow stands still meanwhile, and the readings that arrive
then wait (the tail, not the median). This prints, per count: p50/p95/p99/max of reading → row
committed for telemetry rows and anomaly scores, the CPU of the pipeline and of PostgreSQL per
1,000 readings, and the latest snapshots' size per twin (what the end of an epoch stores per twin it touched).

For each count: the pipeline and the alerts flows tailing topics of their own, with recovery on
(as deployed), one warm-up (every twin scored), then one paced phase of ``--seconds`` (at least two
snapshot intervals), as ``benchmarks.latency`` does (docs/performance.md, "Twins per process").
``--telemetry-apart``: the pipeline without its ingest part (``flow.pipeline_ingest = false``) and the
telemetry flow beside it, which writes the telemetry rows (the CPU column is then the two flows').
"""

from __future__ import annotations

import argparse
import sqlite3
from contextlib import closing
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.latency import FUSED, Phase, measure, ms, own_run, readings_before_scores
from benchmarks.machine import append_result, markdown_table
from benchmarks.processes import interruptible
from twinflow.settings import load_settings

console = Console()
COLUMNS = (
    "twins",
    "readings/s per twin",
    "telemetry p50 ms",
    "p95",
    "p99",
    "max",
    "scores p99 ms",
    "pipeline CPU ms/1k",
    "PostgreSQL CPU ms/1k",
    "snapshot KiB per twin",
    "all written",
)


LATEST_SNAPSHOTS = """
SELECT coalesce(sum(length(ser_change)), 0) FROM snaps
JOIN (SELECT step_id, state_key, max(snap_epoch) AS snap_epoch FROM snaps GROUP BY 1, 2)
  USING (step_id, state_key, snap_epoch)
"""


def snapshot_kib(recovery_dir: str) -> float:
    """KiB of the latest snapshot of every key in the recovery store (every partition of every flow)."""
    total = 0
    for part in Path(recovery_dir).rglob("part-*.sqlite3"):
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            total += db.execute(LATEST_SNAPSHOTS).fetchone()[0]
    return total / 1024


APART = (*FUSED, "telemetry")  # the pipeline without ingest, the alerts flow, and the telemetry flow


def one_count(twins: int, rate: float, seconds: float, sensors: int, apart: bool = False) -> list[str]:
    """One count of twins: a row of :data:`COLUMNS` (``apart``: the telemetry rows by the telemetry flow)."""
    ingest = {"TWINFLOW_FLOW__PIPELINE_INGEST": "false"} if apart else {}
    with own_run("fleet", recovery=True, **ingest) as (env, settings, prefix):
        (phase,) = measure(
            env,
            settings.postgres.conninfo(),
            max_rate=rate,
            fractions=(1.0,),
            seconds=seconds,
            twins=twins,
            sensors=sensors,
            prefix=prefix,
            warmup=readings_before_scores(settings, sensors),
            names=APART if apart else FUSED,
            settings=settings,
            recovery=True,
        )
        return row(twins, phase, snapshot_kib(env["TWINFLOW_FLOW__RECOVERY_DIR"]) / twins)


def row(twins: int, phase: Phase, snapshot_kib: float) -> list[str]:
    """A count's results as the table's cells.

    >>> from benchmarks.latency import Percentiles
    >>> p = Phase(1.0, 2000.0, achieved_rate=2000.0, drained=True, telemetry=Percentiles(10, 0.05, 0.1, 0.4, 0.7),
    ...           scores=Percentiles(10, 0.05, 0.1, 0.39, 0.7), cpu_ms_per_1k={"pipeline": 277.0, "PostgreSQL": 137.4})
    >>> row(1000, p, 35.4)
    ['1,000', '2.000', '50', '100', '400', '700', '390', '277', '137', '35', 'yes']
    >>> p.cpu_ms_per_1k["telemetry"] = 45.0  # with --telemetry-apart: the two flows that do the pipeline's work
    >>> row(1000, p, 35.4)[7]
    '322'
    """
    t = phase.telemetry
    flows = phase.cpu_ms_per_1k.get("pipeline", float("nan")) + phase.cpu_ms_per_1k.get("telemetry", 0.0)
    return [
        f"{twins:,}",
        f"{phase.achieved_rate / twins:.3f}",
        ms(t.p50),
        ms(t.p95),
        ms(t.p99),
        ms(t.max),
        ms(phase.scores.p99),
        f"{flows:.0f}",
        f"{phase.cpu_ms_per_1k.get('PostgreSQL', float('nan')):.0f}",
        f"{snapshot_kib:.0f}",
        "yes" if phase.drained else "no",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=2000.0, help="readings/s, the same for every count")
    ap.add_argument("--twins", type=int, nargs="+", default=[200, 1000, 2000, 5000], help="twins per run")
    ap.add_argument("--seconds", type=float, default=60.0, help="the paced phase (at least two snapshot intervals)")
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument(
        "--telemetry-apart",
        action="store_true",
        help="the pipeline without ingest and the telemetry flow beside it (flow.pipeline_ingest = false)",
    )
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    rows = [one_count(n, args.rate, args.seconds, args.sensors, args.telemetry_apart) for n in args.twins]
    interval = load_settings().flow.snapshot_interval_s
    flows = "pipeline without ingest + telemetry + alerts" if args.telemetry_apart else "pipeline + alerts"
    title = f"Latency by twins per process at {args.rate:,.0f} readings/s ({flows}, recovery on)"
    table = Table(*COLUMNS, title=title)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    if not args.no_record:
        body = markdown_table(COLUMNS, rows)
        body += f"\nflow.snapshot_interval_s = {interval:g}; {args.sensors} values per reading.\n"
        if args.telemetry_apart:
            body += "The pipeline CPU column is the pipeline's and the telemetry flow's together.\n"
        command = (
            f"python -m benchmarks.fleet --rate {args.rate:g} --twins {' '.join(map(str, args.twins))} "
            f"--seconds {args.seconds:g} --sensors {args.sensors}{' --telemetry-apart' if args.telemetry_apart else ''}"
        )
        append_result(title, command, body)


if __name__ == "__main__":
    with interruptible():
        main()
