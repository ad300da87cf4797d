"""Long fault-injection run on a private stack: N readings, F random faults, zero loss/duplicates.

    make bench-faults                                   # 1,000,000 readings, 20 faults
    python -m benchmarks.faults --readings 100000 --faults 5 --no-record

Starts its own stack (temp folder, free ports; never the shared one), the flow (Bytewax
recovery on) and the MQTT bridge. 90 % of the readings go straight to Kafka, 10 % through
MQTT → bridge. While they flow, faults are injected one after another at random moments:
``kill -9`` of the flow (restarted from its recovery snapshots), Kafka restart, PostgreSQL
restart, Mosquitto restart, and once Kafka unreachable for 60 s (bridge and producers buffer).
After each fault it measures how long the pipeline took to catch up with everything sent
(including what producers buffered during the fault) until the fault ended. At the end: rows
in the database vs readings acknowledged.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from benchmarks.machine import append_result
from tests.faults.harness import SENSORS, KafkaFeeder, MqttFeeder, Run
from tests.private_stack import PrivateStack

console = Console()
KINDS = ("flow_kill9", "kafka_restart", "postgres_restart", "mosquitto_restart")


def inject(kind: str, stack: PrivateStack, run: Run) -> float:
    """Apply one fault; returns the outage in seconds (until the component is back)."""
    t0 = time.monotonic()
    if kind == "flow_kill9":
        run.kill("flow")
        run.start_flow(recovery=True)
    elif kind == "kafka_outage_60s":
        stack.restart("kafka", downtime=60)
    else:
        stack.restart(kind.removesuffix("_restart"), downtime=1)
    return time.monotonic() - t0


def _interrupt(_sig, _frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=1_000_000, help="envelopes (2 sensor values each)")
    ap.add_argument("--faults", type=int, default=20)
    ap.add_argument("--rate", type=float, default=2500.0, help="envelopes per second, all feeders together")
    ap.add_argument("--twins", type=int, default=100)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    # SIGTERM (or SIGINT, which background jobs ignore) must still stop the private stack.
    signal.signal(signal.SIGTERM, _interrupt)
    rng = random.Random(args.seed)
    kinds = ["kafka_outage_60s"] + [KINDS[i % len(KINDS)] for i in range(args.faults - 1)]
    rng.shuffle(kinds)

    mqtt_n = args.readings // 10
    kafka_n = args.readings - mqtt_n
    records: list[tuple[int, str, float, float]] = []
    started = time.monotonic()
    with PrivateStack(prefix="twinflow-bench-faults-") as stack:
        console.print(f"private stack in {stack.root}")
        workdir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
        run = Run.create(stack, workdir, "bench")
        try:
            run.start_flow(recovery=True)
            run.start_bridge()
            feeders = [
                KafkaFeeder(run, args.twins, kafka_n, args.rate * 0.9),
                MqttFeeder(run, max(1, args.twins // 10), mqtt_n, args.rate * 0.1, run.settings.mqtt),
            ]
            feeders[1].twins = [f"{run.prefix}-mqtt-{i:03d}" for i in range(max(1, args.twins // 10))]
            for f in feeders:
                f.start()
            feed_s = args.readings / args.rate
            for i, kind in enumerate(kinds, 1):
                time.sleep(rng.uniform(1.0, max(1.5, feed_s / (args.faults + 2) / 2)))
                outage = inject(kind, stack, run)
                target = sum(f.sent for f in feeders) * len(SENSORS)
                over = time.monotonic()
                caught_up = run.wait_rows(target, timeout=600) - over
                records.append((i, kind, outage, caught_up))
                console.print(f"fault {i:2d} {kind:<18} outage {outage:5.1f} s, caught up {caught_up:5.1f} s later")
            for f in feeders:
                f.join()
            errors = [e for f in feeders for e in f.errors]
            acked = sum(f.acked for f in feeders)
            run.wait_rows(acked * len(SENSORS), timeout=900)
            time.sleep(2)
            rows, distinct = run.rows()
            alive = run.alive("flow") and run.alive("bridge")
        finally:
            run.close()
            shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - started
    expected = args.readings * len(SENSORS)
    lost, dup = expected - distinct, rows - distinct
    by_kind = {}
    for _i, kind, outage, caught in records:
        by_kind.setdefault(kind, []).append((outage, caught))
    lines = [
        "| readings (envelopes) | via MQTT | faults | sensor values expected | rows in DB | lost "
        "| duplicated | wall time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.readings:,} | {mqtt_n:,} | {len(records)} | {expected:,} | {rows:,} | {lost} | {dup} "
        f"| {wall:.0f} s |",
        "",
        "| fault | count | outage (median / max) | caught up after (median / max) |",
        "|---|---:|---:|---:|",
    ]
    for kind, values in sorted(by_kind.items()):
        outs, cats = [v[0] for v in values], [v[1] for v in values]
        lines.append(
            f"| {kind} | {len(values)} | {statistics.median(outs):.1f} s / {max(outs):.1f} s "
            f"| {statistics.median(cats):.1f} s / {max(cats):.1f} s |"
        )
    body = "\n".join(lines) + (
        f"\n\nFeed rate {args.rate:,.0f} envelopes/s (90 % Kafka producer, 10 % MQTT QoS 1 → bridge), "
        f"{args.twins} twins, seed {args.seed}. *Outage*: from the fault until the component is back "
        "(kill -9 + restart of the flow; stop + start of a service). *Caught up*: from then until every "
        "reading sent so far (including what producers buffered during the fault) is in PostgreSQL. "
        "Flow and bridge "
        f"{'survived every fault' if alive else 'DIED'}; producer/publisher errors: {len(errors)}."
    )
    console.print(body)
    if not args.no_record:
        append_result(
            "Fault injection: ingest path under random faults",
            f"python -m benchmarks.faults --readings {args.readings} --faults {args.faults} "
            f"--rate {args.rate:g} --twins {args.twins} --seed {args.seed}",
            body,
        )
    if lost or dup or errors or not alive:
        sys.exit(f"lost {lost}, duplicated {dup}, errors {errors[:3]}, processes alive: {alive}")


if __name__ == "__main__":
    main()
