"""Benchmark: reconciliation throughput (state updates/s) and memory per twin.

Drives :class:`operators.twin.processor.TwinProcessor` (reconciler + 1 s / 1 min windows) in one
process, no Kafka or database, over a synthetic plant: every twin reports 4 sensors per envelope
with noise, ``speed`` is digital_wins (commands, acks), ``valve`` is merge, desired updates arrive
now and then. Measures

* events/s and state updates (new versions)/s of the reconciler alone and with windows,
* the same plus JSON encoding of every published record (what the flow sends to Kafka),
* memory per twin (tracemalloc, after warm-up), and the recovery snapshot's size and CPU per twin.

    python -m benchmarks.reconcile --twins 10000 --rounds 30 [--write-results]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from benchmarks.machine import append_result
from benchmarks.ml_cost import snapshot_cost
from benchmarks.processes import cleaning_up, interruptible, run_flow_here
from operators.records.twin import Ack, AckEvent, Command, DesiredEvent, DesiredUpdate, Reported, encode
from operators.twin.event_windows import WindowSpec
from operators.twin.processor import TwinProcessor, TwinRuntime
from operators.twin.state import StateChange
from operators.twin.sync_strategy import TwinPolicy

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

POLICY = {
    "defaults": {"hold_time_s": 2.0, "tolerance": 0.5, "max_desync_time_s": 60},
    "types": {
        "pump": {
            "match": ["pump-*"],
            "parameters": {
                "speed": {"strategy": "digital_wins", "tolerance": 5.0, "critical": True, "ack_timeout_s": 5},
                "valve": {"strategy": "merge", "tolerance": 0.05},
            },
        }
    },
}


def make_events(twins: list[str], rounds: int, seed: int = 1) -> list[tuple[str, object]]:
    """Interleaved events of all twins: 10 envelopes per second per twin, desired updates, acks."""
    rnd = random.Random(seed)
    events: list[tuple[str, object]] = []
    speed = dict.fromkeys(twins, 1000.0)
    for r in range(rounds):
        ts = T0 + timedelta(milliseconds=100 * r)
        for i, twin in enumerate(twins):
            if r % 10 == 0 and (i + r) % 7 == 0:  # a desired change for 1 in 7 twins per second
                target = rnd.choice([900.0, 1000.0, 1100.0])
                events.append((twin, DesiredEvent(DesiredUpdate(twin, {"speed": target, "valve": 0.5}), ts)))
                speed[twin] += (target - speed[twin]) * 0.5
            values = {
                "speed": speed[twin] + rnd.gauss(0, 2),
                "valve": 0.5 + rnd.gauss(0, 0.01),
                "temp_c": 60 + rnd.gauss(0, 0.5),
                "pressure": 4 + rnd.gauss(0, 0.05),
            }
            events.append((twin, Reported(ts, r, "mqtt", values)))
    return events


def run(
    proc: TwinProcessor, runtimes: dict[str, TwinRuntime], events, encode_out: bool
) -> tuple[int, int, float, float]:
    """Apply events (acks answer commands right away); returns (events, versions, wall s, CPU s)."""
    versions = n = 0
    start, cpu = time.perf_counter(), time.process_time()
    for twin, ev in events:
        rt = runtimes.get(twin)
        if rt is None:
            rt = runtimes[twin] = proc.new(twin)
        out = proc.process(rt, ev)
        n += 1
        for item in out:
            if isinstance(item, StateChange):
                versions += 1  # its JSON (item.document) was encoded once with the version, as the flow sends it
            elif isinstance(item, Command):
                n += 1
                acked = proc.process(rt, AckEvent(Ack(item.command_id, "applied"), item.issued_at))
                versions += sum(isinstance(a, StateChange) for a in acked)
                if encode_out:
                    encode(item)
            elif encode_out:
                encode(item)
    return n, versions, time.perf_counter() - start, time.process_time() - cpu


def measure(twins: int, rounds: int) -> dict[str, float]:
    names = [f"pump-{i:05d}" for i in range(twins)]
    events = make_events(names, rounds)
    policy = TwinPolicy.model_validate(POLICY)
    results: dict[str, float] = {"twins": twins, "events": len(events)}

    for label, windows, enc in (
        ("reconcile", False, False),
        ("windows", True, False),
        ("encoded", True, True),
    ):
        spec = WindowSpec((timedelta(seconds=1), timedelta(minutes=1)), timedelta(seconds=5))
        proc = TwinProcessor(policy, spec)
        if not windows:
            proc.process = lambda rt, ev, _p=proc: _p.reconciler.apply(rt.state, ev)  # type: ignore[method-assign]
        runtimes: dict[str, TwinRuntime] = {}
        gc.collect()
        n, versions, secs, cpu = run(proc, runtimes, events, enc)
        results[f"{label}_events_cpu_s"] = n / cpu
        results[f"{label}_events_s"] = n / secs
        results[f"{label}_versions_s"] = versions / secs
        results[f"{label}_versions"] = versions
        results[f"{label}_seconds"] = secs

    # Memory per twin: build and warm 10k twins under tracemalloc (windows included).
    proc = TwinProcessor(policy, WindowSpec())
    warm = make_events(names, 12, seed=2)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    runtimes = {}
    run(proc, runtimes, warm, False)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    results["bytes_per_twin"] = used / twins
    results["snapshot_us_per_twin"], kib = snapshot_cost(list(runtimes.values()))
    results["snapshot_bytes_per_twin"] = kib * 1024
    return results


def measure_flow(twins: int, rounds: int) -> dict[str, float]:
    """The Bytewax flow end to end over Kafka into a private PostgreSQL database (dropped afterwards)."""
    import tempfile
    import uuid
    from pathlib import Path

    import psycopg
    from confluent_kafka import Producer
    from psycopg import sql

    from connectors.kafka.clients import delete_topics, ensure_topics, producer_config, topic_specs
    from connectors.postgres.migrate import migrate
    from flows.twin import build_flow
    from flows.twin_settings import TwinSettings
    from twinflow.settings import Topics, load_settings, topic_fields

    base = load_settings()
    sfx = uuid.uuid4().hex[:8]
    db = f"twinflow_bench_{sfx}"
    su = base.postgres.conninfo(
        user="postgres", password=base.stack.postgres_superuser_password.get_secret_value(), dbname="postgres"
    )
    # Every topic the settings name, renamed for this run (``bench.<sfx>.twin.state``, …): the flow
    # never reads or writes the development stack's own topics, and the clean-up deletes only the run's.
    prefix = f"bench.{sfx}."
    renamed: dict[str, dict[str, str]] = {}
    for section, name, topic in topic_fields(base):
        renamed.setdefault(section, {})[name] = prefix + topic
    tw = TwinSettings.model_validate({**renamed["twin"], "partitions": 1, "policy": POLICY})
    scratch = tempfile.TemporaryDirectory(prefix="twinflow-reconcile-")
    registry = Path(scratch.name) / "twins.toml"
    registry.write_text('[[pattern]]\nmatch = "pump-*"\ntype = "pump"\n')
    s = base.model_copy(
        update={
            **{sec: getattr(base, sec).model_copy(update=names) for sec, names in renamed.items()},
            "postgres": base.postgres.model_copy(update={"dbname": db}),
            "topics": Topics(**renamed["topics"], raw_partitions=1),
            "twin": tw,
            # The desired updates are signed with the local development identity at their event time
            # (hours in the past): the gate's freshness window is opened for this offline backlog. The
            # twins are known from a registry: without one a twin is known from its first reading, and
            # the flow reads the desired and telemetry backlogs in no fixed order between the topics
            # (a desired update read first was denied, ``unknown_twin``: 0 to all 72 of 500 twins').
            "security": base.security.model_copy(
                update={
                    **renamed.get("security", {}),
                    "max_request_age_s": 1e9,
                    "max_clock_skew_s": 1e9,
                    "twin_registry": registry,
                }
            ),
        }
    )
    names = [spec.name for spec in topic_specs(s)]
    assert all(name.startswith(prefix) for name in names), names
    from twinflow.desired_client import build, signer

    me = signer(base)
    try:  # the database, topics and folder go again, also after Ctrl-C or SIGTERM
        with psycopg.connect(su, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(base.postgres.user))
            )
        migrate(s.postgres.conninfo(), "off")
        ensure_topics(s)
        producer = Producer(producer_config(s))
        sent = 0
        for twin, ev in make_events([f"pump-{i:05d}" for i in range(twins)], rounds):
            if isinstance(ev, Reported):
                value = encode(
                    {
                        "v": 1,
                        "twin_id": twin,
                        "ts": ev.ts,
                        "seq": ev.seq,
                        "source": "mqtt",
                        "readings": ev.values,
                    }
                )
                producer.produce(s.topics.raw, key=twin.encode(), value=value)
            else:
                upd = ev.update
                _rid, value = build(me, twin, dict(upd.values), issued_at=ev.at)
                producer.produce(tw.desired_topic, key=twin.encode(), value=value)
            sent += 1
            if sent % 10000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        start, cpu = time.perf_counter(), time.process_time()
        run_flow_here(build_flow(s, tail=False))
        secs, cpu = time.perf_counter() - start, time.process_time() - cpu
        with psycopg.connect(s.postgres.conninfo()) as conn:
            versions = conn.execute("SELECT count(*) FROM twin_state_history").fetchone()[0]
            windows = conn.execute("SELECT count(*) FROM telemetry_windows").fetchone()[0]
            denied = conn.execute("SELECT count(*) FROM desired_rejections").fetchone()[0]
        return {
            "flow_events": sent,
            "flow_versions": versions,
            "flow_windows": windows,
            "flow_denied": denied,
            "flow_seconds": secs,
            "flow_cpu": cpu,
        }
    finally:
        with cleaning_up():
            scratch.cleanup()
            delete_topics(s, names)
            with psycopg.connect(su, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def report(r: dict[str, float]) -> str:
    flow = ""
    if "flow_seconds" in r:
        flow = (
            f"\nEnd to end (Bytewax flow, 1 worker, Kafka → twin step → PostgreSQL history + sync quality + "
            f"windows, Kafka outputs), {int(r['flow_events']):,} input records already in Kafka: "
            f"{r['flow_seconds']:.1f} s, {r['flow_events'] / r['flow_seconds']:,.0f} events/s "
            f"({r['flow_events'] / r['flow_cpu']:,.0f} per CPU-second of the flow process; PostgreSQL and "
            f"Kafka run as other processes), "
            f"{r['flow_versions'] / r['flow_seconds']:,.0f} versions/s written "
            f"({int(r['flow_versions']):,} history rows, {int(r['flow_windows']):,} window rows; "
            f"{int(r['flow_denied']):,} desired updates denied).\n"
        )
    load = os.getloadavg()[0]
    rows = "\n".join(
        f"| {label} | {r[f'{key}_events_s']:,.0f} | {r[f'{key}_events_cpu_s']:,.0f} "
        f"| {r[f'{key}_versions_s']:,.0f} | {int(r[f'{key}_versions']):,} | {r[f'{key}_seconds']:.1f} s |"
        for key, label in (
            ("reconcile", "reconciler only"),
            ("windows", "reconciler + 1 s/1 min windows"),
            ("encoded", "+ JSON encoding of every output"),
        )
    )
    return f"""
- load average at the end {load:.1f} (other work shares the 2 cores)
- {int(r["twins"]):,} twins, {int(r["events"]):,} input events (4-sensor envelopes at 10 Hz per twin,
  desired updates for 1 in 7 twins per second), acks answered at once; one process, one thread.

| path | events/s (wall) | events per CPU-second | state updates (versions)/s (wall) | versions | wall time |
|---|---:|---:|---:|---:|---:|
{rows}

- memory per twin (reconciler state + open windows, tracemalloc after warm-up):
  {r["bytes_per_twin"] / 1024:.1f} KiB
  → {r["bytes_per_twin"] * r["twins"] / 2**20:.0f} MiB for {int(r["twins"]):,} twins
- recovery snapshot per twin (`flows.snapshots.to_snapshot`, taken of every twin touched in an epoch):
  {r["snapshot_bytes_per_twin"] / 1024:.1f} KiB, {r["snapshot_us_per_twin"]:.0f} µs CPU

Every input event makes exactly one new version here (the noisy values always move), so events/s and
versions/s coincide; acks count as events. Events per CPU-second is the steadier figure when other
work shares the machine (wall-clock rates drop with the load average).
{flow}
Scale-out: the state is keyed by twin_id, so Bytewax processes (`-p`) split twins between them.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twins", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=30, help="envelopes per twin (10 per event-time second)")
    ap.add_argument("--flow-rounds", type=int, default=0, help="also run the flow end to end (0: skip)")
    ap.add_argument("--write-results", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = ap.parse_args()
    command = f"python -m benchmarks.reconcile --twins {args.twins} --rounds {args.rounds}"
    results = measure(args.twins, args.rounds)
    if args.flow_rounds:
        command += f" --flow-rounds {args.flow_rounds}"
        results.update(measure_flow(args.twins, args.flow_rounds))
    text = report(results)
    print(text)
    if args.write_results:
        append_result("Twin reconciliation: operator throughput and memory", command, text)


if __name__ == "__main__":
    with interruptible("its database, topics and folder are removed"):
        main()
