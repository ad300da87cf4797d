"""Benchmark: readings/s from Kafka through the telemetry flow into PostgreSQL.

    make bench-ingest                       # 1,000,000 readings (envelopes of 5 values)
    python -m benchmarks.ingest --readings 100000 --processes 2

Produces N envelopes for T twins into a fresh 4-partition topic first, then runs the
flow (``tail=False``: it stops at the end of the topic) and measures wall time from
start to the last row committed. Rows are counted in the database afterwards and
the benchmark's rows are deleted again.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from confluent_kafka import Producer
from rich.console import Console
from rich.progress import Progress

from benchmarks.machine import append_result
from benchmarks.processes import cleaning_up, flow_command, interruptible, stop
from connectors.kafka.clients import delete_topics, ensure_topics, producer_config
from twinflow.settings import Topics, load_settings

console = Console()


# What a benchmark reading's values look like (rng, seq, sensor index) -> value. ``ramp`` (the default,
# comparable with every earlier run): each value moves by 1 per reading, beyond the 1 % deadband of
# most values, so nearly every reading is a twin version (0.82 per reading: the most the twin writes);
# ``steady``: levels with 0.3 % noise, a transmitter's (0.07 versions per reading; python -m
# benchmarks.versions).
SHAPES: dict[str, Callable[[random.Random, int, int], float]] = {
    "ramp": lambda rng, seq, j: float(seq % 1000) + j,
    "steady": lambda rng, seq, j: 100.0 * (1 + j) * (1 + rng.gauss(0, 0.003)),
}


def send_reading(
    p: Producer,
    topic: str,
    twin: str,
    ts: datetime,
    seq: int,
    names: list[str],
    wait_s: float,
    shape: str,
    rng: random.Random,
) -> None:
    """One benchmark envelope (values of ``shape``, :data:`SHAPES`, drawing noise from ``rng``); waits
    ``wait_s`` while the queue is full."""
    value = SHAPES[shape]
    body = {
        "v": 1,
        "twin_id": twin,
        "ts": ts,
        "seq": seq,
        "source": "bench",
        "readings": {k: value(rng, seq, j) for j, k in enumerate(names)},
    }
    while True:
        try:
            p.produce(topic, key=twin.encode(), value=orjson.dumps(body))
            return
        except BufferError:
            p.poll(wait_s)


def produce(settings, n: int, twins: int, sensors: int, prefix: str, shape: str = "ramp") -> float:
    """Send ``n`` envelopes round-robin over ``twins`` (10 ms of event time apart per twin); returns the wall time."""
    rng = random.Random(7)  # the same data in every call
    p = Producer(producer_config(settings, **{"linger.ms": 20}))
    t0 = datetime.now(UTC) - timedelta(hours=1)
    names = [f"s{i}" for i in range(sensors)]
    ids = [f"{prefix}-{i:05d}" for i in range(twins)]
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("producing", total=n)
        for i in range(n):
            twin = ids[i % twins]
            seq = i // twins
            ts = t0 + timedelta(milliseconds=seq * 10)
            send_reading(p, settings.topics.raw, twin, ts, seq, names, 0.05, shape, rng)
            if i % 10000 == 0:
                p.poll(0)
                progress.update(task, completed=i)
        p.flush()
    return time.perf_counter() - start


def telemetry_rows(db: psycopg.Connection, prefix: str) -> int:
    """The telemetry rows of the twins ``<prefix>-…`` (a benchmark run's)."""
    return db.execute("SELECT count(*) FROM telemetry WHERE twin_id LIKE %s", (prefix + "-%",)).fetchone()[0]


def generate(env: dict[str, str], readings: int, twins: int, sensors: int, prefix: str, shape: str = "ramp") -> float:
    """Run :func:`produce` in its own process (values of ``shape``: :data:`SHAPES`);
    returns its wall time."""
    code = (
        "from benchmarks.ingest import produce; from twinflow.settings import load_settings; "
        f"print(produce(load_settings(), {readings}, {twins}, {sensors}, {prefix!r}, {shape!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_flow(cmd: list[str], env: dict[str, str]) -> None:
    """Run the flow to the end of its topic; on Ctrl-C or SIGTERM (:func:`~benchmarks.processes.interruptible`)
    stop it (:func:`~benchmarks.processes.stop`) and let the KeyboardInterrupt go on."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        rc = proc.wait()
    finally:
        stop(proc)
    if rc:
        raise subprocess.CalledProcessError(rc, cmd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=1_000_000, help="envelopes to send")
    ap.add_argument("--twins", type=int, default=1000)
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    base = load_settings()
    settings = base.model_copy(
        update={"topics": Topics(raw=f"bench.raw.{run}", dlq=f"bench.dlq.{run}", raw_partitions=4)}
    )
    prefix = f"bench{run}"
    try:
        ensure_topics(settings)
        produce_s = produce(settings, args.readings, args.twins, args.sensors, prefix)
        console.print(f"produced {args.readings:,} envelopes in {produce_s:.1f} s")

        env = {
            **os.environ,
            "TWINFLOW_TOPICS__RAW": settings.topics.raw,
            "TWINFLOW_TOPICS__DLQ": settings.topics.dlq,
        }
        # `twinflow run -p N` starts N Bytewax processes as one cluster (bytewax.run has no -p).
        cmd = flow_command("telemetry", tail=False)
        cmd += ["-p", str(args.processes)]
        console.print("running the flow: twinflow " + " ".join(cmd[3:]))
        start = time.perf_counter()
        run_flow(cmd, env)
        flow_s = time.perf_counter() - start
        with psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:
            rows = telemetry_rows(db, prefix)
    finally:  # also after Ctrl-C or a failed flow: the run's rows and topics never stay behind
        with cleaning_up(), psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:
            db.execute("DELETE FROM telemetry WHERE twin_id LIKE %s", (prefix + "-%",))
            delete_topics(settings, [settings.topics.raw, settings.topics.dlq])

    values = args.readings * args.sensors
    ok = rows == values
    body = (
        "| readings (envelopes) | sensor values | processes | flow wall time | readings/s | values/s "
        "| rows in DB |\n"
        f"|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {args.readings:,} | {values:,} | {args.processes} | {flow_s:.1f} s "
        f"| {args.readings / flow_s:,.0f} "
        f"| {values / flow_s:,.0f} | {rows:,} {'(all)' if ok else '(MISMATCH)'} |\n"
    )
    console.print(body)
    if not args.no_record:
        append_result(
            "Ingest: Kafka → flow → PostgreSQL",
            f"python -m benchmarks.ingest --readings {args.readings} --twins {args.twins} "
            f"--sensors {args.sensors} --processes {args.processes}",
            body + "\nKafka, PostgreSQL and the flow share the machine; the topic is filled before the flow "
            "starts, so this is the flow's drain rate (binary COPY into telemetry; a batch with "
            "stored rows through a staging table + INSERT … ON CONFLICT DO NOTHING).",
        )
    if not ok:
        sys.exit(f"expected {values} rows, found {rows}")


if __name__ == "__main__":
    with interruptible("the run's rows and topics are deleted"):  # Ctrl-C, SIGTERM: its flow stopped, nothing left
        main()
