"""CPU per reading of one flow draining a filled topic, and a digest of everything it wrote.

    python -m benchmarks.flow_cpu --flow twin --flow models --readings 100000
    python -m benchmarks.flow_cpu --baseline /tmp/base --repeat 2   # before/after, same input
    python -m benchmarks.flow_cpu --readings 3000 --twins 10 --repeat 2 --check  # deterministic output?
    python -m benchmarks.flow_cpu --flow pipeline --readings 100000        # the fused flow (rows too)
    python -m benchmarks.flow_cpu --flow pipeline --processes 2            # the same as a 2-process cluster
    python -m benchmarks.flow_cpu --flow alerts --baseline /tmp/base       # the alerts flow on the pipeline's outputs
    python -m benchmarks.flow_cpu --flow pipeline --shape steady           # steady values: few twin versions

Fills one fresh ``telemetry.raw`` topic with N envelopes (the e2e load generator; ``--shape``: their
values, ``benchmarks.ingest.SHAPES``), then runs each
flow alone (``twinflow run FLOW --no-tail --no-recovery``, its own process) from this checkout
and, with ``--baseline DIR``, from another checkout of the project (e.g. ``git archive`` of the
commit before a change), alternating A/B ``--repeat`` times on the same input. Every run writes to
its own output topics (and its own database rows, deleted before the run), so each run's
**output digest** covers exactly what it wrote: the Kafka records per topic and key in order
(twin.state, twin.commands, anomaly scores, forecasts, …) and the database rows of the twin flow
(state history, sync quality, windows; the pipeline flow: those, the telemetry rows and the model
outputs' rows), without write-time columns. Equal digests = same output. The pipeline and alerts
runs also print the digest of the model outputs' rows alone (``model rows``), whichever of the two
wrote them (the pipeline flow since 2026-12-05; the alerts flow of an older baseline).

CPU is the process's user + system time (psutil, children included), so it is comparable while
other jobs share the cores; the load average is printed next to it. ``server`` is the CPU the local
stack's PostgreSQL (every backend, also those that ended) and Kafka broker spent meanwhile: the
flow's writes cost there too, on the same cores. PostgreSQL's is also split by writer (``PostgreSQL
52.6: TwinSink 27.6, TelemetrySink 17.8, …, other 3.8``: each sink's connection is named
``twinflow <sink>``; ``other``: the server's background processes and unnamed connections).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition

from benchmarks.e2e import ProcStats, sample
from benchmarks.ingest import SHAPES, generate
from benchmarks.processes import WriterCpu, cleaning_up, flow_command, interruptible, server_cpu
from benchmarks.processes import stop as stop_processes
from connectors.kafka.clients import client_config, delete_topics, ensure_topics, topic_specs
from twinflow.demo.plant import topic_env
from twinflow.settings import load_settings

# (table, columns, order) of the rows the flows write (write-time columns left out).
DB_TABLES = {
    "twin": (
        (
            "twin_state_history",
            "twin_id, version, event_time, status, mode, learn, reported, desired, delta, conflicts, commands,"
            " consistency_score, sync_latency_ms, last_sync_time, desync_since, change",
            "twin_id, version",
        ),
        (
            "telemetry_windows",
            "twin_id, sensor, window_size, window_start, window_end, count, mean, min, max, last, stddev, version",
            "twin_id, sensor, window_size, window_start",
        ),
    ),
    "telemetry": (("telemetry", "twin_id, sensor, ts, value, seq, quality, source", "twin_id, sensor, ts"),),
}
DB_TABLES["model_outputs"] = (
    (
        "anomaly_scores",
        "twin_id, ts, score, threshold, is_anomaly, contributions, model, kind, health, drivers, sensor_faults",
        "twin_id, ts",
    ),
    ("forecasts", "*", "twin_id, sensor, ts, target_ts"),
    ("failure_predictions", "*", "twin_id, ts"),
)
# ingest + twin + models in one flow, which writes its model outputs' rows too (before 2026-12-05 the
# alerts flow did: a baseline older than that writes them in its alerts run)
DB_TABLES["pipeline"] = DB_TABLES["twin"] + DB_TABLES["telemetry"] + DB_TABLES["model_outputs"]
DB_TABLES["alerts"] = (  # the models flow's outputs, and alert versions
    *DB_TABLES["model_outputs"],
    ("alerts", "*", "alert_id, opened_at"),
    ("alert_events", "*", "alert_id, version, ts"),
)


def delete_rows(conninfo: str, prefix: str) -> None:
    from benchmarks.cleanup import delete_run_rows

    delete_run_rows(conninfo, list(dict.fromkeys(t for tables in DB_TABLES.values() for t, _, _ in tables)), prefix)


def db_digest(conninfo: str, flow: str, prefix: str) -> tuple[str, int]:
    """sha256 over the flow's rows (ordered by their identity) and the row count."""
    h, n = hashlib.sha256(), 0
    with psycopg.connect(conninfo) as db:
        for table, cols, order in DB_TABLES.get(flow, ()):
            query = f"SELECT {cols} FROM {table} WHERE twin_id LIKE %s ORDER BY {order}"
            h.update(table.encode())
            for row in db.execute(query, (prefix + "-%",)):
                h.update(repr(row).encode())
                n += 1
    return h.hexdigest()[:16], n


def kafka_digest(settings, topics: list[str], prefix: str) -> tuple[str, int]:
    """sha256 over each topic's records (topic named without the run's ``prefix``), grouped by key
    in partition order, and the record count."""
    group = {"group.id": f"digest-{uuid.uuid4().hex}", "enable.auto.commit": False}
    consumer = Consumer(client_config(settings, **group))
    per_key: dict[tuple[str, bytes], list[bytes]] = {}
    n = 0
    try:
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for part in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, part, low)])
                pos = low
                while pos < high:
                    for m in consumer.consume(min(10_000, high - pos), 5.0):
                        if m.error():
                            continue
                        per_key.setdefault((topic.removeprefix(prefix), m.key() or b""), []).append(m.value() or b"")
                        pos = m.offset() + 1
                        n += 1
    finally:
        consumer.close()
    h = hashlib.sha256()
    for (topic, key), values in sorted(per_key.items()):
        h.update(f"{topic}\0{key!r}\0{len(values)}".encode())
        for v in values:
            h.update(hashlib.sha256(v).digest())
    return h.hexdigest()[:16], n


@functools.cache
def known_settings(code: Path) -> frozenset[str]:
    """``TWINFLOW_<SECTION>__<FIELD>`` names of the settings of the checkout at ``code``."""
    script = (
        "from twinflow.settings import Settings\n"
        "for section, field in Settings.model_fields.items():\n"
        "    for name in getattr(field.annotation, 'model_fields', {}):\n"
        "        print(f'TWINFLOW_{section.upper()}__{name.upper()}')"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return frozenset(out.split())


def for_checkout(env: dict[str, str], code: Path) -> dict[str, str]:
    """``env`` without the topic settings the checkout does not have (a baseline from before a
    setting was renamed, e.g. ``[twin] alerts_topic`` → ``desync_topic``: the topic keeps its default)."""
    known = known_settings(code)
    return {
        k: v
        for k, v in env.items()
        if not (k.startswith("TWINFLOW_") and "__" in k and k.endswith("_TOPIC")) or k in known
    }


def run_flow(flow: str, code: Path, env: dict[str, str], processes: int = 1) -> tuple[float, float]:
    """Drain the topic with one flow process (``processes`` > 1: a local cluster, ``-p N``) started
    in ``code``; returns (CPU s, wall s)."""
    stats, stop = ProcStats(), threading.Event()
    start = time.perf_counter()
    cluster = ["-p", str(processes)] if processes > 1 else []
    proc = subprocess.Popen(
        [*flow_command(flow, tail=False, checkout=code), *cluster],
        cwd=code,
        env={**for_checkout(env, code), "PYTHONPATH": str(code)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        threading.Thread(target=sample, args=(proc, stats, stop), daemon=True).start()
        _, err = proc.communicate()
        wall = time.perf_counter() - start
    finally:  # (Ctrl-C, SIGTERM: the flow stops too)
        stop.set()
        stop_processes(proc)
    if proc.returncode != 0:
        raise SystemExit(f"flow {flow} ({code}) failed:\n{err.decode()[-3000:]}")
    return stats.cpu_s, wall


def model_outputs(base, raw_topic: str, prefix: str, code: Path, created: list[str]) -> dict[str, str]:
    """Drain the telemetry topic once with the pipeline flow (``code``) into topics named with
    ``prefix`` (added to ``created`` before they are made); returns the settings that point the
    alerts flow's inputs at them."""
    from flows.alerts import input_topics

    env = {**os.environ, **topic_env(base, prefix), "TWINFLOW_TOPICS__RAW": raw_topic}
    os.environ.update(env)
    settings = load_settings()
    created += [t.name for t in topic_specs(settings) if t.name != raw_topic]
    ensure_topics(settings)
    cpu, wall = run_flow("pipeline", code, env)
    print(f"pipeline (alerts' input) CPU {cpu:.1f} s, wall {wall:.1f} s", flush=True)
    inputs = set(input_topics(settings))
    return {k: v for k, v in env.items() if k.startswith("TWINFLOW_") and v in inputs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow", action="append", help="flow(s) to run (default: twin, models)")
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--twins", type=int, default=200)
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--shape", choices=SHAPES, default="ramp", help="the readings' values (benchmarks.ingest.SHAPES)")
    ap.add_argument("--baseline", type=Path, help="another checkout of the project to compare with")
    ap.add_argument("--repeat", type=int, default=1, help="runs per flow and checkout (alternating)")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every run of a flow wrote the same output")
    ap.add_argument("--processes", type=int, default=1, help="run each flow as a local cluster (-p N)")
    args = ap.parse_args()

    here = Path(__file__).resolve().parent.parent
    codes = [("baseline", args.baseline.resolve()), ("this", here)] if args.baseline else [("this", here)]
    run = uuid.uuid4().hex[:6]
    base = load_settings()
    input_env = {**os.environ, **topic_env(base, f"fcpu.{run}.in.")}
    raw_topic = input_env["TWINFLOW_TOPICS__RAW"]
    os.environ.update(input_env)
    in_settings = load_settings()
    prefix = f"fcpu{run}"
    conninfo = base.postgres.conninfo()
    created: list[str] = [t.name for t in topic_specs(in_settings)]
    results: list[tuple[str, str, int, float, float, str, float, str]] = []
    startup: dict[tuple[str, str], float] = {}
    try:
        ensure_topics(in_settings)
        generate(input_env, args.readings, args.twins, args.sensors, prefix, args.shape)
        # Start-up CPU (imports, connections, an empty drain) of each flow and checkout, to tell
        # the per-reading cost from the one-off cost of starting a process.
        empty_env = {**os.environ, **topic_env(base, f"fcpu.{run}.empty.")}
        os.environ.update(empty_env)
        created += [t.name for t in topic_specs(load_settings())]
        ensure_topics(load_settings())
        alert_inputs: dict[str, str] = {}
        if "alerts" in (args.flow or []):
            alert_inputs = model_outputs(base, raw_topic, f"fcpu.{run}.models.", here, created)
        for flow in args.flow or ["twin", "models"]:
            for label, code in codes:
                startup[(flow, label)], _ = run_flow(flow, code, empty_env, args.processes)
                print(f"{flow:9} {label:8} start-up on an empty topic: CPU {startup[(flow, label)]:.1f} s", flush=True)
        for r in range(args.repeat):
            for flow in args.flow or ["twin", "models"]:
                for label, code in codes:
                    out_prefix = f"fcpu.{run}.{flow}{r}{label}."
                    out_env = {**os.environ, **topic_env(base, out_prefix)}
                    out_env["TWINFLOW_TOPICS__RAW"] = raw_topic
                    if flow == "alerts":
                        out_env.update(alert_inputs)
                    os.environ.update(out_env)
                    out_settings = load_settings()
                    inputs = {raw_topic, *alert_inputs.values()} if flow == "alerts" else {raw_topic}
                    names = [t.name for t in topic_specs(out_settings) if t.name not in inputs]
                    created += names
                    ensure_topics(out_settings)
                    delete_rows(conninfo, prefix)
                    load = os.getloadavg()[0]
                    pg0, kafka0 = server_cpu()
                    with WriterCpu(conninfo) as writers:
                        cpu, wall = run_flow(flow, code, out_env, args.processes)
                    pg, kafka = (after - before for after, before in zip(server_cpu(), (pg0, kafka0), strict=True))
                    server = pg + kafka
                    kd, kn = kafka_digest(out_settings, names, out_prefix)
                    dd, dn = db_digest(conninfo, flow, prefix)
                    digest = f"kafka {kd} ({kn:,}) db {dd} ({dn:,})"
                    if flow in ("pipeline", "alerts"):  # whichever wrote them: comparable across the two
                        md, mn = db_digest(conninfo, "model_outputs", prefix)
                        digest += f" model rows {md} ({mn:,})"
                    results.append((flow, label, r, cpu, wall, digest, server, f"{load:.1f}"))
                    by_writer = writers.split(pg, args.readings)
                    print(
                        f"{flow:9} {label:8} run {r}: CPU {cpu:6.1f} s = {cpu / args.readings * 1e6:5.1f} ms per 1k"
                        f" readings (PostgreSQL {pg / args.readings * 1e6:5.1f}{': ' + by_writer if by_writer else ''},"
                        f" Kafka {kafka / args.readings * 1e6:5.1f}), wall {wall:5.1f} s, load {load:.1f};"
                        f" {digest}",
                        flush=True,
                    )
    finally:
        with cleaning_up():
            delete_rows(conninfo, prefix)
            os.environ.update(input_env)
            delete_topics(load_settings(), created)
    differ = []
    for flow in args.flow or ["twin", "models"]:
        digests = {d for f, _, _, _, _, d, _, _ in results if f == flow}
        if len(digests) != 1:
            differ.append(flow)
        for label, _ in codes:
            cpus = sorted(c for f, lab, _, c, _, _, _, _ in results if f == flow and lab == label)
            servers = sorted(s for f, lab, _, _, _, _, s, _ in results if f == flow and lab == label)
            med, server = cpus[len(cpus) // 2], servers[len(servers) // 2]
            steady = (med - startup[(flow, label)]) / args.readings * 1e6
            print(
                f"{flow}: {label} median CPU {med / args.readings * 1e6:.1f} ms per 1k readings ({len(cpus)} runs);"
                f" without start-up ({startup[(flow, label)]:.1f} s) {steady:.1f} ms per 1k readings;"
                f" server (PostgreSQL + Kafka) {server / args.readings * 1e6:.1f} ms per 1k readings"
            )
        print(f"{flow}: {'same output in every run' if len(digests) == 1 else 'OUTPUTS DIFFER'}")
    if args.check and differ:
        sys.exit(f"outputs differ between runs: {', '.join(differ)}")


if __name__ == "__main__":
    with interruptible():
        main()
