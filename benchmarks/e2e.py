"""End-to-end benchmark: the pipeline next to the raw limit and a naive reference, same data.

    make bench                                   # 200,000 readings × 5 values, 200 twins
    python -m benchmarks.e2e --readings 20000 --no-record   # the small variant the tests run

1. A load generator (its own process) fills two fresh 4-partition topics with the same N envelopes
   (twin ids differ, so the runs never meet in the database).
2. **Pipeline**, two ways, one topic each: the fused ``pipeline`` flow (ingest, twin, models in one
   process) and the separate telemetry, twin and models flows side by side (one process each)
   drain their topic, then the alerts flow drains the scores; a third copy measures the pipeline
   flow as a local cluster (``--pipeline-processes``, default 2: ``-p 2`` over the 4 partitions);
   a fourth runs the pipeline flow with the alerts flow beside it, tailing (as deployed: done when
   every model output has its row, which the pipeline flow writes, and the alerts flow has caught
   up); a fifth the same on steady values (``--steady``, default: ``benchmarks.ingest.SHAPES``; the
   others are a ramp that makes a twin version at nearly every reading); throughput = readings / total
   wall time; CPU (ms per 1,000 readings, µs per value) and peak RSS per process are sampled.
3. **Raw limit**: one process that only consumes in batches, decodes with orjson and binary-COPYs
   the values into a scratch table: what Kafka + PostgreSQL allow on this machine.
4. **Naive reference**: per-message poll, ``json.loads``, one INSERT + commit per value (as many
   tutorials do), on a sample of the data (it is slow), extrapolated as a rate.
5. **Latency** (benchmarks/latency.py): the pipeline and alerts flows (``--latency-flows
   separate``: the four flows) run tailing on fresh topics; a paced generator sends at 25, 50 and
   90 % of that deployment's rate from step 2 (fused: the higher of its two runs) for ``--latency-seconds``
   each; p50/p95/p99 of (row insert time − reading ts) for telemetry rows and anomaly scores, and the
   p99 of the readings' hop into Kafka (the broker's append time − ts). Then
   50 % again with the flows' recovery on, as ``twinflow run`` runs them by default (a snapshot of
   every twin each ``flow.snapshot_interval_s``), ``--recovery-runs`` times one after the other (3:
   one run's p99 on a shared 2-core machine varies by more than the goal's margin), with the p99s'
   median; the CPU of each flow, PostgreSQL and Kafka and the machine's busy share during each phase.

Prints a table with the ratios and appends it to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

import orjson
import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql
from rich.console import Console
from rich.table import Table

from benchmarks import latency
from benchmarks.cleanup import compact_indexes, delete_run_rows, vacuum
from benchmarks.ingest import generate, telemetry_rows
from benchmarks.latency import FUSED
from benchmarks.machine import PROBE, append_result, markdown_table, speed_probe
from benchmarks.processes import cleaning_up, flow_command, interruptible, usage, wait_idle
from benchmarks.processes import stop as stop_processes
from connectors.kafka.clients import client_config, delete_topics, ensure_topics, topic_specs
from connectors.postgres.migrate import migrate
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings, load_settings

console = Console(width=max(Console().width, 150))  # the tables stay readable in logs
PIPELINE = ("telemetry", "twin", "models", "alerts")


@dataclass
class ProcStats:
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    samples: list[float] = field(default_factory=list)


def sample(proc: subprocess.Popen, stats: ProcStats, stop: threading.Event) -> None:
    """Peak RSS and CPU time of a child process and its children, every 0.5 s."""
    while not stop.is_set() and proc.poll() is None:
        cpu, rss = usage(proc.pid)
        stats.peak_rss_mb = max(stats.peak_rss_mb, rss / 2**20)
        stats.cpu_s = max(stats.cpu_s, cpu)
        time.sleep(0.5)


def _run_flows(names: tuple[str, ...], env: dict[str, str], stats: dict[str, ProcStats], processes: int = 1) -> None:
    stop = threading.Event()
    procs = {
        name: subprocess.Popen(
            [*flow_command(name, tail=False), *(["-p", str(processes)] if processes > 1 else [])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name in names
    }
    try:
        for n, p in procs.items():
            threading.Thread(target=sample, args=(p, stats[n], stop), daemon=True).start()
        for name, p in procs.items():
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"flow {name} failed:\n{err.decode()[-3000:]}")
    finally:  # interrupted, or one flow failed: the others stop too
        stop.set()
        stop_processes(*procs.values())


@dataclass
class PipelineRun:
    label: str
    names: tuple[str, ...]
    wall: float = 0.0
    first: float = 0.0  # the flows that read telemetry (all but alerts)
    stats: dict[str, ProcStats] = field(default_factory=dict)
    rows: int = 0
    scores: tuple[int, int] = (0, 0)
    versions: int = 0  # twin versions (state history rows)
    together: bool = False  # the alerts flow ran beside the others (tailing), not after them

    def timing(self) -> str:
        first = f"{', '.join(self.names[:-1])} {self.first:.1f} s"
        if self.together:
            return f"{first}, the alerts flow alongside, done {self.wall - self.first:.1f} s later"
        return f"{first}, then alerts {self.wall - self.first:.1f} s"


def run_pipeline(
    env: dict[str, str], names: tuple[str, ...] = PIPELINE, label: str = "", processes: int = 1
) -> PipelineRun:
    """The flows that read telemetry drain the topic side by side (tail=False), each as a local
    cluster of ``processes``; then the alerts flow (last of ``names``) drains what the models wrote."""
    out = PipelineRun(label or f"{', '.join(names)}", names, stats={name: ProcStats() for name in names})
    start = time.perf_counter()
    _run_flows(names[:-1], env, out.stats, processes)
    out.first = time.perf_counter() - start
    _run_flows(names[-1:], env, out.stats)
    out.wall = time.perf_counter() - start
    return out


MODEL_OUTPUT_TABLES = ("anomaly_scores", "forecasts", "failure_predictions")


def model_output_records(settings) -> int:
    """Records on the model-output topics (what the alerts flow writes a row for)."""
    a = settings.alerts
    consumer = Consumer(client_config(settings, **{"group.id": f"count-{uuid.uuid4().hex}"}))
    try:
        n = 0
        for topic in (a.anomalies_topic, a.forecasts_topic, a.failures_topic):
            for part in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
                n += high - low
        return n
    finally:
        consumer.close()


def model_output_rows(db: psycopg.Connection, prefix: str) -> int:
    count = sql.SQL("SELECT count(*) FROM {} WHERE twin_id LIKE %s")
    return sum(db.execute(count.format(sql.Identifier(t)), (prefix + "-%",)).fetchone()[0] for t in MODEL_OUTPUT_TABLES)


def run_together(
    env: dict[str, str], settings, prefix: str, names: tuple[str, ...] = FUSED, label: str = "", stall_s: float = 60.0
) -> PipelineRun:
    """All flows at once, as deployed: the alerts flow (last of ``names``) tails the model outputs
    while the others drain the telemetry topic; done when a row is written for every model output
    (by the pipeline flow, or by the alerts flow after the models flow) and the alerts flow has
    caught up (:func:`~benchmarks.processes.wait_idle`; then it is stopped with SIGTERM). Fails if the rows stop growing
    for ``stall_s`` before that."""
    out = PipelineRun(label, names, stats={n: ProcStats() for n in names}, together=True)
    stop = threading.Event()
    start = time.perf_counter()
    # its log goes to a file: a pipe nobody reads while it runs could fill and stall the flow
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    alerts = subprocess.Popen(flow_command(names[-1], tail=True), env=env, stdout=subprocess.DEVNULL, stderr=log)
    threading.Thread(target=sample, args=(alerts, out.stats[names[-1]], stop), daemon=True).start()
    try:
        _run_flows(names[:-1], env, out.stats)
        out.first = time.perf_counter() - start
        expected = model_output_records(settings)
        rows, last_change = -1, time.perf_counter()
        with psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:  # one connection for the polls
            while (now := model_output_rows(db, prefix)) < expected:
                if alerts.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"the alerts flow ended early:\n{log.read().decode()[-3000:]}")
                if now != rows:
                    rows, last_change = now, time.perf_counter()
                elif time.perf_counter() - last_change > stall_s:
                    raise SystemExit(f"the alerts flow wrote {now:,} of {expected:,} model-output rows, then nothing")
                time.sleep(0.1)
        # The pipeline flow writes the model outputs' rows itself: the alerts flow is done when it has
        # gone idle on them (its alert lifecycle), i.e. its CPU over half a second is that of tailing.
        wait_idle([alerts], 60, busy_share=0.15, window_s=0.5)
        out.wall = time.perf_counter() - start
    finally:
        stop_processes(alerts, within_s=30)
        stop.set()
        log.close()
    return out


def count_outputs(settings, prefix: str, run: PipelineRun) -> None:
    with psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:
        run.rows = telemetry_rows(db, prefix)
        run.scores = db.execute(
            "SELECT count(*), count(DISTINCT twin_id) FROM anomaly_scores WHERE twin_id LIKE %s",
            (prefix + "-%",),
        ).fetchone()
        run.versions = db.execute(
            "SELECT count(*) FROM twin_state_history WHERE twin_id LIKE %s", (prefix + "-%",)
        ).fetchone()[0]


def raw_limit(settings, topic: str, readings: int) -> float:
    """Consume in batches, decode with orjson, binary COPY the values: no validation, no models."""
    c = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"raw-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    c.subscribe([topic])
    seen = 0
    with psycopg.connect(settings.postgres.conninfo()) as db:
        db.execute("CREATE TEMP TABLE raw_sink (twin_id text, sensor text, ts text, value float8)")
        start = time.perf_counter()
        while seen < readings:
            msgs = c.consume(5000, 1.0)
            rows = []
            for m in msgs:
                if m.error():
                    continue
                env = orjson.loads(m.value())
                for k, v in env["readings"].items():
                    rows.append((env["twin_id"], k, env["ts"], v))
            seen += len(msgs)
            with db.cursor().copy("COPY raw_sink FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["text", "text", "text", "float8"])
                for r in rows:
                    cp.write_row(r)
            db.commit()
        wall = time.perf_counter() - start
    c.close()
    return wall


def naive(settings, topic: str, sample_n: int) -> float:
    """Per-message poll, json.loads, INSERT + commit per value; returns seconds for ``sample_n``."""
    c = Consumer(client_config(settings, **{"group.id": f"naive-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    with psycopg.connect(settings.postgres.conninfo()) as db:
        db.execute("CREATE TEMP TABLE naive_sink (twin_id text, sensor text, ts text, value float8)")
        db.commit()
        done = 0
        start = time.perf_counter()
        while done < sample_n:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            env = json.loads(m.value())
            for k, v in env["readings"].items():
                db.execute("INSERT INTO naive_sink VALUES (%s, %s, %s, %s)", (env["twin_id"], k, env["ts"], v))
                db.commit()
            done += 1
        wall = time.perf_counter() - start
    c.close()
    return wall


def run_latency(
    max_rate: float,
    args,
    names: tuple[str, ...] = FUSED,
    fractions: tuple[float, ...] = (0.25, 0.5, 0.9),
    recovery: bool = False,
) -> list[latency.Phase]:
    """The latency phases on fresh topics (the flows tail them; ``recovery``: with recovery on, in a
    temporary directory); cleans up its rows, topics and recovery directory."""
    with latency.own_run("latr" if recovery else "lat", recovery=recovery) as (env, settings, prefix):
        return latency.measure(
            env,
            settings.postgres.conninfo(),
            max_rate=max_rate,
            fractions=fractions,
            seconds=args.latency_seconds,
            twins=args.latency_twins or args.twins,
            sensors=args.sensors,
            prefix=prefix,
            warmup=latency.readings_before_scores(settings, args.sensors),
            names=names,
            settings=settings,
            recovery=recovery,
        )


RUN_TABLES = ("telemetry", "anomaly_scores", "forecasts", "failure_predictions", "twin_state_history",
              "telemetry_windows")  # fmt: skip
"""The tables a run's flows write (its rows are deleted from them afterwards)."""


def cleanup(settings, prefix: str) -> None:
    """Delete the run's rows and topics."""
    delete_run_rows(settings.postgres.conninfo(), RUN_TABLES, prefix)
    delete_topics(settings, [t.name for t in topic_specs(settings)])


LATENCY_COLUMNS = (
    "load",
    "target /s",
    "sent /s",
    "telemetry p50 ms",
    "p95",
    "p99",
    "into Kafka p99",
    "anomaly score p50 ms",
    "p95",
    "p99",
    "all written",
)


def _latency_cells(p: latency.Phase) -> list[str]:
    ms = latency.ms
    return [
        p.label(),
        f"{p.target_rate:,.0f}",
        f"{p.achieved_rate:,.0f}",
        ms(p.telemetry.p50),
        ms(p.telemetry.p95),
        ms(p.telemetry.p99),
        ms(p.telemetry_on_kafka.p99),
        ms(p.scores.p50),
        ms(p.scores.p95),
        ms(p.scores.p99),
        "yes" if p.drained else f"no ({p.telemetry.rows:,} rows)",
    ]


def latency_table(phases: list[latency.Phase], max_rate: float) -> Table:
    t = Table(title=f"end-to-end latency (reading ts → row inserted), max rate {max_rate:,.0f} readings/s")
    for col in LATENCY_COLUMNS:
        t.add_column(col, justify="right")
    for p in phases:
        t.add_row(*_latency_cells(p))
    return t


def latency_markdown(
    phases: list[latency.Phase], max_rate: float, args, names: tuple[str, ...], snapshot_interval_s: float
) -> str:
    table = markdown_table(LATENCY_COLUMNS, [_latency_cells(p) for p in phases])
    cpu = "; ".join(f"{p.label()}: {p.cpu_line()}" for p in phases)
    return (
        f"\nEnd-to-end latency, readings/s as a share of the rate above ({max_rate:,.0f}/s); "
        f'flows {", ".join(names)} tailing (recovery off; the row marked "recovery on" with it, as '
        f"`twinflow run` runs them by default), {args.latency_twins or args.twins:,} twins, "
        f"{args.latency_seconds:g} s per rate (with recovery on at least two snapshot intervals: "
        f"{latency.phase_seconds(args.latency_seconds, snapshot_interval_s, recovery=True):g} s); "
        "latency = row insert time (`clock_timestamp()`, migration 0040) − reading ts; "
        '"into Kafka": the broker\'s append time of the reading − its ts:\n\n'
        + table
        + f"\nCPU share of each flow, PostgreSQL and Kafka (ms per 1,000 readings) during the phases: {cpu}.\n"
        + (f"\n{summary}\n" if (summary := recovery_summary(phases)) else "")
    )


def recovery_summary(phases: list[latency.Phase]) -> str:
    """The p99s of the repeated 50 % phases with recovery on, and their median (empty for fewer than two).

    >>> from benchmarks.latency import Percentiles, Phase
    >>> runs = [Phase(0.5, 4500.0, recovery=True, run=k, telemetry=Percentiles(p99=t), scores=Percentiles(p99=s))
    ...         for k, (t, s) in enumerate([(0.21, 0.19), (0.53, 0.45), (0.15, 0.15)], 1)]
    >>> print(recovery_summary(runs))
    p99 at 50 % with recovery on, 3 runs: telemetry 210, 530, 150 ms (median 210), scores 190, 450, 150 ms (median 190)
    """
    runs = [p for p in phases if p.recovery and p.run]
    if len(runs) < 2:
        return ""

    def spread(values: list[float]) -> str:
        return f"{', '.join(latency.ms(v) for v in values)} ms (median {latency.ms(statistics.median(values))})"

    return (
        f"p99 at 50 % with recovery on, {len(runs)} runs: telemetry {spread([p.telemetry.p99 for p in runs])}, "
        f"scores {spread([p.scores.p99 for p in runs])}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--twins", type=int, default=200, help="twins (each needs > 400 readings to leave warm-up)")
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--naive-sample", type=int, default=3000, help="messages for the naive reference")
    ap.add_argument("--latency-seconds", type=float, default=20.0, help="seconds per latency rate (0: skip)")
    ap.add_argument("--latency-twins", type=int, default=None, help="twins in the latency runs (default: --twins)")
    ap.add_argument(
        "--latency-flows",
        choices=("fused", "separate"),
        default="fused",
        help="the deployment the latency runs measure: pipeline + alerts (default), or the four flows",
    )
    ap.add_argument(
        "--pipeline-processes",
        type=int,
        default=2,
        help="also run the pipeline flow as a local cluster of N processes (-p N; 0 or 1: skip)",
    )
    ap.add_argument(
        "--recovery-runs",
        type=int,
        default=3,
        help="50 %% phases with the flows' recovery on, one after the other (a single run's p99 varies)",
    )
    ap.add_argument(
        "--steady",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the pipeline and alerts flows side by side on steady values (0.3 %% noise: few twin versions)",
    )
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:6]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    probe_before = speed_probe()  # and again at the end: the host's speed drifts within a run too
    base = load_settings()
    migrate(base.postgres.conninfo(), base.postgres.timescaledb)  # idempotent; latency needs 0040's stamps
    for shrunk in compact_indexes(base.postgres.conninfo(), RUN_TABLES):  # bloat earlier runs left behind
        console.print(f"indexes rebuilt before the run: {shrunk}")
    env = {**os.environ, **topic_env(base, f"bench.{run}.")}
    os.environ.update(env)
    settings = load_settings()
    prefix = f"e2e{run}"
    made: list[tuple[Settings, str]] = [(settings, prefix)]  # the topics and twins of every copy, deleted at the end
    try:
        ensure_topics(settings)
        gen_s = generate(env, args.readings, args.twins, args.sensors, prefix)

        def copy(part: str, shape: str = "ramp") -> tuple[dict[str, str], tuple[Settings, str]]:
            """The readings again on topics of their own (``bench.<run>.<part>.``) and other twin ids (no
            shared rows): the run's environment and (settings, twin id prefix)."""
            part_env = {**os.environ, **topic_env(base, f"bench.{run}.{part}.")}
            target = (_settings_of(part_env), f"e2e{run}{part[0]}")
            made.append(target)
            ensure_topics(target[0])
            generate(part_env, args.readings, args.twins, args.sensors, target[1], shape)
            return part_env, target

        fused_env, fused = copy("fused")  # for the fused flow
        targets = [fused, (settings, prefix)]
        together_env, together = copy("together")  # the pipeline flow with the alerts flow beside it (as deployed)
        cluster = args.pipeline_processes
        if cluster > 1:  # the pipeline flow as a local cluster, on a third copy
            cluster_env, cluster_target = copy("cluster")
            targets.append(cluster_target)
        console.print(f"load generator: {args.readings:,} readings in {gen_s:.1f} s (per run a topic of its own)")

        runs = [
            run_pipeline(fused_env, FUSED, "pipeline flow + alerts (2 processes)"),
            run_pipeline(env, PIPELINE, "separate flows (4 processes)"),
        ]
        if cluster > 1:
            label = f"pipeline flow -p {cluster} + alerts ({cluster + 1} processes)"
            runs.append(run_pipeline(cluster_env, FUSED, label, processes=cluster))
        runs.append(run_together(together_env, *together, FUSED, "pipeline flow + alerts side by side (2 processes)"))
        targets.append(together)
        side_by_side = runs[-1]
        if args.steady:  # the same deployment on steady values: about one twin version per 14 readings
            steady_env, steady = copy("steady", "steady")
            label = "pipeline flow + alerts side by side, steady values (2 processes)"
            runs.append(run_together(steady_env, *steady, FUSED, label))
            targets.append(steady)
        raw_s = raw_limit(settings, settings.topics.raw, args.readings)
        naive_s = naive(settings, settings.topics.raw, min(args.naive_sample, args.readings))
        for r, (s, p) in zip(runs, targets, strict=True):
            count_outputs(s, p, r)

        n, values = args.readings, args.readings * args.sensors
        raw_rate = n / raw_s
        naive_rate = min(args.naive_sample, n) / naive_s
        lat_names = FUSED if args.latency_flows == "fused" else PIPELINE
        # 50 % of the higher of the fused flow's two rates (after the pipeline / alongside it)
        lat_rate = n / (min(runs[0].wall, side_by_side.wall) if args.latency_flows == "fused" else runs[1].wall)
        phases = []
        if args.latency_seconds > 0:
            # The runs above added millions of rows: autovacuum would work through them during the
            # latency phases (after inserts of a fifth of a table). Done now, before the clock starts.
            vacuum(base.postgres.conninfo(), RUN_TABLES)
            phases = run_latency(lat_rate, args, lat_names)
            if args.recovery_runs > 0:
                repeated = (0.5,) * args.recovery_runs
                phases += run_latency(lat_rate, args, lat_names, fractions=repeated, recovery=True)
    finally:
        # After the latency phases: deleting the runs' millions of rows sets autovacuum to work on the
        # tables, which competed with the flows during the phases when the clean-up came first. Also
        # after Ctrl-C, SIGTERM or a failure: the run's rows and topics never stay behind.
        with cleaning_up():
            for s, p in made:
                cleanup(s, p)
    t = Table(title="end to end, same data")
    for col in ("run", "readings/s", "values/s", "vs raw limit", "vs naive"):
        t.add_column(col, justify="right")
    for r in runs:
        rate = n / r.wall
        t.add_row(
            r.label,
            f"{rate:,.0f}",
            f"{rate * args.sensors:,.0f}",
            f"{rate / raw_rate:.0%}",
            f"{rate / naive_rate:.1f}×",
        )
    t.add_row(
        "raw limit (consume + COPY)",
        f"{raw_rate:,.0f}",
        f"{raw_rate * args.sensors:,.0f}",
        "100%",
        f"{raw_rate / naive_rate:.1f}×",
    )
    t.add_row(
        "naive (poll, json, INSERT+commit)",
        f"{naive_rate:,.0f}",
        f"{naive_rate * args.sensors:,.0f}",
        f"{naive_rate / raw_rate:.1%}",
        "1.0×",
    )
    console.print(t)
    procs = Table(title="per process")
    for col in PROC_COLUMNS:
        procs.add_column(col, justify="right")
    for r in runs:
        for cells in _proc_cells(r, n, args.sensors):
            procs.add_row(*cells)
    console.print(procs)
    for r in runs:
        console.print(
            f"{r.label}: wall {r.wall:.1f} s ({r.timing()}); "
            f"telemetry rows {r.rows:,} (expected {values:,}); anomaly scores {r.scores[0]:,} for {r.scores[1]} twins;"
            f" twin versions {r.versions:,} ({r.versions / n:.2f} per reading)",
            soft_wrap=True,  # one line per run, however long (the test harness reads it)
        )
    if phases:
        console.print(latency_table(phases, lat_rate))
        if summary := recovery_summary(phases):
            console.print(summary)
    if any(r.rows != values for r in runs):
        sys.exit("a pipeline run did not write every value")
    speed = (
        f"Speed probe (the models step alone, {PROBE[0]} twins × {PROBE[1]} readings one per call: CPU ms per 1,000"
        f" readings; a slower host gives more): {probe_before:.1f} before the runs, {speed_probe():.1f} after."
    )
    console.print(speed, soft_wrap=True)
    if not args.no_record:
        md = (
            "| run | readings/s | values/s | vs raw limit | vs naive |\n|---|---:|---:|---:|---:|\n"
            + "".join(
                f"| {r.label} | {n / r.wall:,.0f} | {n / r.wall * args.sensors:,.0f} "
                f"| {n / r.wall / raw_rate:.0%} | {n / r.wall / naive_rate:.1f}× |\n"
                for r in runs
            )
            + f"| raw limit (consume + orjson + COPY) | {raw_rate:,.0f} | {raw_rate * args.sensors:,.0f} | 100% "
            f"| {raw_rate / naive_rate:.1f}× |\n"
            f"| naive (poll, json.loads, INSERT+commit per value; {min(args.naive_sample, n):,} msgs) "
            f"| {naive_rate:,.0f} | {naive_rate * args.sensors:,.0f} | {naive_rate / raw_rate:.1%} | 1.0× |\n\n"
            "| "
            + " | ".join(PROC_COLUMNS)
            + " |\n|---|---|"
            + "---:|" * (len(PROC_COLUMNS) - 2)
            + "\n"
            + "".join("| " + " | ".join(c) + " |\n" for r in runs for c in _proc_cells(r, n, args.sensors))
            + "".join(
                f"\n{r.label}: wall time {r.wall:.1f} s ({r.timing()}); {r.scores[0]:,} anomaly scores for"
                f" {r.scores[1]:,} twins; {r.versions / n:.2f} twin versions per reading."
                for r in runs
            )
            + f"\n\n{n:,} readings of {args.sensors} values, {args.twins:,} twins. "
            f"Load average before the run: {load}. {speed}\n"
            + (latency_markdown(phases, lat_rate, args, lat_names, settings.flow.snapshot_interval_s) if phases else "")
        )
        append_result(
            "End to end: pipeline flow vs separate flows vs raw limit vs naive",
            f"python -m benchmarks.e2e --readings {n} --twins {args.twins} --sensors {args.sensors}",
            md,
        )
    if any(not p.drained for p in phases):  # recorded as such ("all written: no"), but the run failed
        sys.exit("a latency phase was not written completely in time (see the table)")


PROC_COLUMNS = ("run", "flow", "CPU s", "CPU ms per 1k readings", "CPU µs per value", "CPU/wall", "peak RSS MiB")


def _proc_cells(r: PipelineRun, readings: int, sensors: int) -> list[list[str]]:
    """Per process of a run: CPU per reading and per value (the stage's cost), share of wall, RSS."""
    rows = []
    for name, st in r.stats.items():
        stage = "ingest + twin + models" if name == "pipeline" else name
        rows.append(
            [
                r.label.split(" (")[0],
                stage,
                f"{st.cpu_s:.1f}",
                f"{st.cpu_s / readings * 1e6:,.0f}",
                f"{st.cpu_s / (readings * sensors) * 1e6:,.1f}",
                f"{st.cpu_s / r.wall:.0%}",
                f"{st.peak_rss_mb:.0f}",
            ]
        )
    return rows


def _settings_of(env: dict[str, str]):
    """Settings as a process started with ``env`` sees them."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    with interruptible():
        main()
