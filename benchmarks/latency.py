"""End-to-end latency of the running pipeline at fixed input rates (used by benchmarks/e2e.py).

The flows run tailing (as deployed). A paced load generator (its own process) sends envelopes
whose ``ts`` is the send time; every row the pipeline writes carries its insert time
(``telemetry.ingested_at``, ``anomaly_scores.written_at``: ``clock_timestamp()`` per row,
migration 0040), so latency per row = insert time − ``ts`` (same machine, same clock).

1. Warm-up: ``warmup + 5`` readings per twin with timestamps an hour old (``warmup``:
   :func:`readings_before_scores`), so every twin's anomaly model leaves warm-up; wait until every
   twin has a score and every flow is idle again (the warm-up backlog is done: the clock starts on
   an idle pipeline).
2. For each rate: send at that rate for ``seconds``, wait until the rows of that phase are
   written, then take p50/p95/p99 of (insert time − ts) for the phase's rows. Run alone, it also
   splits off the readings' hop into Kafka (the broker's append time − ts, "into Kafka") and the
   scores' first hop ("on Kafka"), and prints the CPU of each flow, PostgreSQL and Kafka.

The flows run without recovery unless ``--recovery`` (as deployed: a snapshot every
``flow.snapshot_interval_s``, in a temporary directory; each phase then lasts at least two
intervals, whatever ``--seconds`` says)::

    python -m benchmarks.latency --rate 5000 --flow pipeline --flow alerts --seconds 20 --recovery
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
from confluent_kafka import Producer
from psycopg import sql

from benchmarks.ingest import SHAPES, generate, send_reading, telemetry_rows
from benchmarks.processes import (
    WriterCpu,
    cleaning_up,
    flow_command,
    interruptible,
    machine_cpu,
    server_cpu,
    stop,
    usage,
    wait_idle,
)
from connectors.kafka.clients import producer_config

if TYPE_CHECKING:
    from twinflow.settings import Settings

PIPELINE = ("telemetry", "twin", "models", "alerts")
FUSED = ("pipeline", "alerts")  # the fused flow (ingest, twin, models) and the alerts flow


def produce_paced(
    settings, rate: float, seconds: float, twins: int, sensors: int, prefix: str, seq0: int, shape: str = "ramp"
) -> dict[str, float]:
    """Send envelopes (values of ``shape``: ``benchmarks.ingest.SHAPES``) at ``rate``/s for ``seconds``;
    ``ts`` = send time. Returns the phase's bounds."""
    rng = random.Random(seq0)
    p = Producer(producer_config(settings))
    # A new idempotent producer needs metadata and a producer id first (~0.5 s here): readings sent
    # meanwhile would wait for it. One delivered message to the (unread) dead-letter topic first.
    p.produce(settings.topics.dlq, key=b"bench-warm-up", value=b"{}")
    p.flush(30)
    names = [f"s{i}" for i in range(sensors)]
    ids = [f"{prefix}-{i:05d}" for i in range(twins)]
    n = 0
    start = time.perf_counter()
    first = datetime.now(UTC)
    last = first
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) + 1
        while n < due:
            twin = ids[n % twins]
            seq = seq0 + n // twins
            last = datetime.now(UTC)
            send_reading(p, settings.topics.raw, twin, last, seq, names, 0.01, shape, rng)
            n += 1
        p.poll(0)
        time.sleep(max(0.0005, n / rate - (time.perf_counter() - start)))
    p.flush()
    return {"sent": n, "first": first.timestamp(), "last": last.timestamp(), "wall": time.perf_counter() - start}


def paced_process(
    env: dict[str, str], rate: float, seconds: float, twins: int, sensors: int, prefix: str, seq0: int, shape: str
):
    """Run :func:`produce_paced` in its own process (it must not share the GIL with anything)."""
    code = (
        "import json; from benchmarks.latency import produce_paced; from twinflow.settings import load_settings; "
        "print(json.dumps(produce_paced(load_settings(), "
        f"{rate}, {seconds}, {twins}, {sensors}, {prefix!r}, {seq0}, {shape!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@dataclass
class Percentiles:
    rows: int = 0
    p50: float = float("nan")
    p95: float = float("nan")
    p99: float = float("nan")
    max: float = float("nan")


@dataclass
class Phase:
    fraction: float
    target_rate: float
    sent: int = 0
    achieved_rate: float = 0.0
    drained: bool = False
    telemetry: Percentiles = field(default_factory=Percentiles)
    scores: Percentiles = field(default_factory=Percentiles)
    scores_on_kafka: Percentiles = field(default_factory=Percentiles)  # the first hop of the scores
    telemetry_on_kafka: Percentiles = field(default_factory=Percentiles)  # the readings' hop into Kafka
    recovery: bool = False  # the flows ran with recovery on (snapshots every flow.snapshot_interval_s)
    run: int = 0  # the phase's number among phases of the same load (1, 2, …; 0: the only one)
    cpu_share: dict[str, float] = field(default_factory=dict)  # per flow, then PostgreSQL and Kafka
    cpu_ms_per_1k: dict[str, float] = field(default_factory=dict)  # CPU per 1,000 readings sent
    writers: str = ""  # PostgreSQL's CPU per 1,000 readings by writer (WriterCpu.split)
    busy: float = float("nan")  # share of the machine's cores busy (everything on it, the generator too)
    cores: int = 0

    def label(self) -> str:
        """The load level, "recovery on" where the flows ran with it, and which run of that load.

        >>> Phase(0.5, 4500.0, recovery=True, run=2).label(), Phase(0.25, 2250.0).label()
        ('50% recovery on, run 2', '25%')
        """
        recovery = " recovery on" if self.recovery else ""
        return f"{self.fraction:.0%}{recovery}" + (f", run {self.run}" if self.run else "")

    def cpu_line(self) -> str:
        """CPU share and ms per 1,000 readings of each flow and service (PostgreSQL's by writer too), and
        the machine's busy share.

        >>> p = Phase(0.5, 4500.0, cpu_share={"pipeline": 0.7, "PostgreSQL": 0.35}, busy=0.75, cores=2,
        ...           cpu_ms_per_1k={"pipeline": 155.0, "PostgreSQL": 77.0}, writers="TwinSink 35.0, other 42.0")
        >>> p.cpu_line()
        'pipeline 70% (155 ms/1k), PostgreSQL 35% (77 ms/1k: TwinSink 35.0, other 42.0); machine 75% busy (2 cores)'
        """
        by_writer = {"PostgreSQL": f": {self.writers}"} if self.writers else {}
        each = ", ".join(
            f"{k} {v:.0%} ({self.cpu_ms_per_1k[k]:.0f} ms/1k{by_writer.get(k, '')})" for k, v in self.cpu_share.items()
        )
        return f"{each}; machine {self.busy:.0%} busy ({self.cores} cores)"


PERCENTILES_SQL = sql.SQL("""
SELECT count(*),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM {stamp} - ts)),
       max(extract(epoch FROM {stamp} - ts))
FROM {table} WHERE twin_id LIKE %s AND ts BETWEEN to_timestamp(%s) AND to_timestamp(%s)
""")
COUNT_SQL = sql.SQL(
    "SELECT count(*) FROM {table} WHERE twin_id LIKE %s AND ts BETWEEN to_timestamp(%s) AND to_timestamp(%s)"
)


def readings_before_scores(settings: Settings, sensors: int) -> int:
    """Readings a twin needs before its first anomaly score with ``settings.ml``: the detector's
    warm-up, or 10 normal deviations per sensor (at most twice the warm-up), after the restart that
    taking its sensors for counters makes (the ramp's values rise for 1,000 readings, so with
    ``ml.counters.detect`` they are counters after ``ml.counters.rises`` rises: docs/ml.md)."""
    from operators.ml.novelty import calibration_rows

    ml = settings.ml
    scored_from = max(ml.anomaly.warmup, calibration_rows(ml.anomaly, sensors))
    return scored_from + (ml.counters.rises if ml.counters.detect else 0)


def percentiles(db: psycopg.Connection, table: str, stamp: str, prefix: str, lo: float, hi: float) -> Percentiles:
    """Latency percentiles in seconds of the prefix's rows with ``ts`` in [lo, hi] (epoch seconds)."""
    query = PERCENTILES_SQL.format(stamp=sql.Identifier(stamp), table=sql.Identifier(table))
    n, pct, mx = db.execute(query, (prefix + "-%", lo, hi + 0.001)).fetchone()
    if not n:
        return Percentiles()
    return Percentiles(n, pct[0], pct[1], pct[2], float(mx))


def count_rows(db: psycopg.Connection, table: str, prefix: str, lo: float, hi: float) -> int:
    return db.execute(COUNT_SQL.format(table=sql.Identifier(table)), (prefix + "-%", lo, hi + 0.001)).fetchone()[0]


def kafka_percentiles(settings, topic: str, lo: float, hi: float) -> Percentiles:
    """Latency of the records on ``topic`` whose ``ts`` is in [lo, hi]: the broker's log-append
    time (or the producer's create time) − ``ts``. For the scores, that is the pipeline's share of
    their latency; the rest (row written − on Kafka) is the alerts flow's."""
    import numpy as np
    import orjson
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.clients import client_config

    c = Consumer(client_config(settings, **{"group.id": f"lat-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    lat: list[float] = []
    done: set[int] = {p for p, end in ends.items() if end == 0}
    while len(done) < len(parts):
        for m in c.consume(10_000, 1.0):
            if m.error():
                continue
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
            ts = datetime.fromisoformat(orjson.loads(m.value())["ts"]).timestamp()
            if lo <= ts <= hi + 0.001:
                lat.append(m.timestamp()[1] / 1000.0 - ts)
    c.close()
    if not lat:
        return Percentiles()
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return Percentiles(len(lat), float(p50), float(p95), float(p99), max(lat))


def stamp_on_append(settings, topic: str) -> None:
    """Make the broker stamp ``topic``'s records with its log-append time (a benchmark's own topic):
    :func:`kafka_percentiles` of the readings then measures their hop into Kafka (generator → broker)."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from connectors.kafka.clients import client_config

    entry = ConfigEntry("message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET)
    admin = AdminClient(client_config(settings))
    for done in admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[entry])]).values():
        done.result(timeout=30)


def phase_seconds(seconds: float, snapshot_interval_s: float, recovery: bool) -> float:
    """A phase's length: with recovery on at least two snapshot intervals (a shorter one may hold no
    epoch's end, whose stall is part of what recovery costs).

    >>> phase_seconds(20, 30, True), phase_seconds(20, 30, False), phase_seconds(90, 30, True)
    (60, 20, 90)
    """
    return max(seconds, 2 * snapshot_interval_s) if recovery else seconds


def wait_for(check, timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()


class TailingFlows:
    """Flows as separate processes, tailing (``--tail``), recovery off (``recovery``: on, as deployed,
    in ``flow.recovery_dir`` of ``env``); stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], names: tuple[str, ...] = PIPELINE, recovery: bool = False) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        try:
            for name in names:
                self.procs[name] = subprocess.Popen(
                    flow_command(name, tail=True, recovery=recovery),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
        except BaseException:  # (Ctrl-C between two starts: the caller has no object to stop)
            stop(*self.procs.values())
            raise
        self._errors: dict[str, bytes] = {}
        self._readers = {  # drain stderr so a chatty flow never blocks
            name: threading.Thread(target=self._drain, args=(name, p), daemon=True) for name, p in self.procs.items()
        }
        for reader in self._readers.values():
            reader.start()

    def _drain(self, name: str, p: subprocess.Popen) -> None:
        self._errors[name] = p.stderr.read() if p.stderr else b""

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                time.sleep(0.5)
                err = self._errors.get(name, b"").decode()[-3000:]
                raise SystemExit(f"flow {name} exited ({p.returncode}):\n{err}")

    def cpu(self) -> dict[str, float]:
        return {name: usage(p.pid)[0] for name, p in self.procs.items()}

    def wait_idle(self, timeout_s: float, busy_share: float = 0.1, window_s: float = 1.0) -> bool:
        """Wait until every flow used < ``busy_share`` of a core over ``window_s`` (its backlog is done)."""
        return wait_idle(list(self.procs.values()), timeout_s, busy_share, window_s, self.check_alive)

    def output(self, name: str) -> str:
        """What flow ``name`` wrote to stderr (its log), once it has exited."""
        self._readers[name].join(5)
        return self._errors.get(name, b"").decode(errors="replace")

    def stop(self) -> float:
        """SIGTERM to every flow; the seconds until the last one exited (killed after 30 s)."""
        t0 = time.monotonic()
        stop(*self.procs.values(), within_s=30)
        return time.monotonic() - t0


@contextmanager
def own_run(tag: str, *, recovery: bool = False, **env_vars: str) -> Iterator[tuple[dict[str, str], Any, str]]:
    """A benchmark run's own topics, twins and (``recovery``) recovery directory, deleted afterwards.

    Yields the environment for the flows it starts (also set in ``os.environ`` while the run lasts, so
    this process's settings are the run's; restored afterwards, so the next run's topics are named
    from the original ones), its settings and its twins' id prefix (``<prefix>-<n>``); ``env_vars``
    are set too (``TWINFLOW_…`` settings of the run)."""
    from benchmarks.e2e import cleanup  # (e2e imports this module)
    from connectors.kafka.clients import ensure_topics
    from twinflow.demo.plant import topic_env
    from twinflow.settings import load_settings

    before = dict(os.environ)
    run = uuid.uuid4().hex[:6]
    env = {**before, **topic_env(load_settings(), f"{tag}.{run}."), **env_vars}
    if recovery:
        env["TWINFLOW_FLOW__RECOVERY_DIR"] = tempfile.mkdtemp(prefix=f"{tag}-{run}-recovery-")
    os.environ.update(env)
    settings = load_settings()
    prefix = f"{tag}{run}"
    try:
        ensure_topics(settings)
        yield env, settings, prefix
    finally:
        with cleaning_up():
            cleanup(settings, prefix)
            if recovery:
                shutil.rmtree(env["TWINFLOW_FLOW__RECOVERY_DIR"], ignore_errors=True)
            os.environ.clear()
            os.environ.update(before)


def measure(
    env: dict[str, str],
    conninfo: str,
    *,
    max_rate: float,
    fractions: tuple[float, ...],
    seconds: float,
    twins: int,
    sensors: int,
    prefix: str,
    warmup: int,
    drain_timeout_s: float = 120.0,
    names: tuple[str, ...] = PIPELINE,
    settings=None,
    recovery: bool = False,
    shape: str = "ramp",
) -> list[Phase]:
    """Run the tailing flows ``names`` through a warm-up and one paced phase per fraction of ``max_rate``
    (a fraction given more than once: as many phases of that load, one after the other, numbered).

    Scores are waited for and measured when the models and alerts flows run (a diagnosis may run
    the telemetry flow alone); with ``settings`` (the run's topics) the scores' first hop too: on
    Kafka − reading time, and the readings' hop into Kafka (the raw topic, the run's own, is set to be
    stamped with the broker's append time here: :func:`stamp_on_append`). ``recovery``: the
    flows run with recovery on (snapshots every ``flow.snapshot_interval_s``, as deployed), in
    ``flow.recovery_dir`` of ``env``; then a phase lasts at least two snapshot intervals (a shorter
    one may hold no epoch's end, whose stall is part of what recovery costs)."""
    if settings is not None:
        stamp_on_append(settings, settings.topics.raw)
        if (longer := phase_seconds(seconds, settings.flow.snapshot_interval_s, recovery)) > seconds:
            seconds = longer
            print(f"recovery on: phases of {seconds:g} s (two snapshot intervals, flow.snapshot_interval_s)")
    flows = TailingFlows(env, names, recovery)
    scored = ("models" in names or "pipeline" in names) and "alerts" in names
    phases: list[Phase] = []
    try:
        warm_n = twins * ((warmup if scored else 0) + 5)  # (warmup: readings_before_scores)
        generate(env, warm_n, twins, sensors, prefix, shape)
        with psycopg.connect(conninfo, autocommit=True) as db:

            def ready() -> bool:
                flows.check_alive()
                if not scored:
                    return telemetry_rows(db, prefix) >= warm_n * sensors
                q = "SELECT count(DISTINCT twin_id) FROM anomaly_scores WHERE twin_id LIKE %s"
                return db.execute(q, (prefix + "-%",)).fetchone()[0] >= twins

            if not wait_for(ready, drain_timeout_s + warm_n / 1000):
                raise SystemExit("latency warm-up: the flows did not process the warm-up readings in time")
            # A first score per twin does not mean every flow is done with the warm-up (the twin flow
            # may still work through it): start the clock only when all of them are idle.
            if not flows.wait_idle(drain_timeout_s):
                raise SystemExit("latency warm-up: the flows did not become idle after the warm-up")
            seq0 = warm_n // twins
            for i, f in enumerate(fractions):
                run = fractions[: i + 1].count(f) if fractions.count(f) > 1 else 0
                phase = Phase(f, f * max_rate, recovery=recovery, run=run, cores=psutil.cpu_count() or 0)
                cpu0, t0 = _cpu(flows), time.perf_counter()
                busy0, all0 = machine_cpu()
                with WriterCpu(conninfo) as writers:
                    res = paced_process(env, phase.target_rate, seconds, twins, sensors, prefix, seq0, shape)
                    seq0 += int(res["sent"]) // twins + 2
                    phase.sent, phase.achieved_rate = int(res["sent"]), res["sent"] / res["wall"]
                    lo, hi = res["first"], res["last"]

                    def drained(lo=lo, hi=hi, sent=phase.sent) -> bool:
                        flows.check_alive()
                        return count_rows(db, "telemetry", prefix, lo, hi) >= sent * sensors and (
                            not scored or count_rows(db, "anomaly_scores", prefix, lo, hi) >= sent
                        )

                    phase.drained = wait_for(drained, drain_timeout_s)
                cpu1, wall = _cpu(flows), time.perf_counter() - t0
                phase.writers = writers.split(cpu1["PostgreSQL"] - cpu0["PostgreSQL"], max(phase.sent, 1))
                busy1, all1 = machine_cpu()
                phase.busy = (busy1 - busy0) / max(all1 - all0, 1e-9)
                phase.cpu_share = {k: (cpu1[k] - cpu0[k]) / wall for k in cpu1}
                phase.cpu_ms_per_1k = {k: (cpu1[k] - cpu0[k]) * 1e6 / max(phase.sent, 1) for k in cpu1}
                phase.telemetry = percentiles(db, "telemetry", "ingested_at", prefix, lo, hi)
                if scored:
                    phase.scores = percentiles(db, "anomaly_scores", "written_at", prefix, lo, hi)
                    if settings is not None:
                        phase.scores_on_kafka = kafka_percentiles(settings, settings.alerts.anomalies_topic, lo, hi)
                if settings is not None:
                    phase.telemetry_on_kafka = kafka_percentiles(settings, settings.topics.raw, lo, hi)
                phases.append(phase)
    finally:
        flows.stop()
    return phases


def _cpu(flows: TailingFlows) -> dict[str, float]:
    """CPU seconds so far of each flow, then of the stack's PostgreSQL and Kafka (0 if not local)."""
    postgres, kafka = server_cpu()
    return {**flows.cpu(), "PostgreSQL": postgres, "Kafka": kafka}


def ms(x: float) -> str:
    return "–" if x != x else f"{x * 1000:,.0f}"  # x != x: NaN


SERIES_SQL = """
SELECT date_trunc('second', ts) AS s, count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts)),
       max(extract(epoch FROM ingested_at - ts))
FROM telemetry WHERE twin_id LIKE %s AND ts > now() - interval '1 hour' GROUP BY 1 ORDER BY 1
"""


def print_series(conninfo: str, prefix: str) -> None:
    """Telemetry latency per second of reading time: when do the slow rows happen?"""
    with psycopg.connect(conninfo) as db:
        for sec, n, p50, mx in db.execute(SERIES_SQL, (prefix + "-%",)):
            print(f"{sec:%H:%M:%S} {n:6d} rows  p50 {p50 * 1000:7.0f} ms  max {mx * 1000:7.0f} ms")


def main() -> None:
    """Diagnosis: latency of some flows at given rates (the full comparison is benchmarks/e2e.py)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--rate", type=float, action="append", required=True, help="readings/s (repeatable)")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--twins", type=int, default=200)
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--flow", action="append", choices=(*PIPELINE, "pipeline"), help="flows to run (default: all four)")
    ap.add_argument("--series", action="store_true", help="print the telemetry latency per second of ts")
    ap.add_argument("--recovery", action="store_true", help="the flows with recovery on, as deployed (a temporary dir)")
    ap.add_argument("--shape", choices=SHAPES, default="ramp", help="the readings' values (benchmarks.ingest.SHAPES)")
    args = ap.parse_args()
    with own_run("lat", recovery=args.recovery) as (env, settings, prefix):
        phases = measure(
            env,
            settings.postgres.conninfo(),
            max_rate=1.0,
            fractions=tuple(args.rate),
            seconds=args.seconds,
            twins=args.twins,
            sensors=args.sensors,
            shape=args.shape,
            prefix=prefix,
            warmup=readings_before_scores(settings, args.sensors),
            names=tuple(args.flow or PIPELINE),
            settings=settings,
            recovery=args.recovery,
        )
        if args.series:
            print_series(settings.postgres.conninfo(), prefix)
    for p in phases:
        t, sc, k, r = p.telemetry, p.scores, p.scores_on_kafka, p.telemetry_on_kafka
        print(
            f"{p.target_rate:,.0f}/s{' (recovery on)' if p.recovery else ''}: "
            f"telemetry p50/p95/p99/max {ms(t.p50)}/{ms(t.p95)}/{ms(t.p99)}/{ms(t.max)} ms "
            f"(into Kafka {ms(r.p50)}/{ms(r.p95)}/{ms(r.p99)}/{ms(r.max)} ms); "
            f"scores {ms(sc.p50)}/{ms(sc.p95)}/{ms(sc.p99)}/{ms(sc.max)} ms "
            f"(on Kafka {ms(k.p50)}/{ms(k.p95)}/{ms(k.p99)}/{ms(k.max)} ms); drained {p.drained}; CPU {p.cpu_line()}"
        )


if __name__ == "__main__":
    with interruptible():
        main()
