"""Long fault-injection run on a private stack: N readings, F random faults, zero loss/duplicates.

    make bench-faults                                   # the fused pipeline, 200,000 readings, 8 faults
    python -m benchmarks.faults --readings 200000 --faults 8
    python -m benchmarks.faults --flow telemetry --readings 1000000 --faults 20   # ingest only
    python -m benchmarks.faults --readings 20000 --faults 3 --no-record

Starts its own stack (temp folder, free ports; never the shared one), the flow with Bytewax
recovery on — by default the fused pipeline (``twinflow run pipeline``) and the alerts flow, as
deployed; ``--flow telemetry``: the ingest flow alone — and the MQTT bridge. 90 % of the readings
go straight to Kafka, 10 % through MQTT → bridge; every fifth twin's values step far out of range for
100 readings every 1,000 (anomaly episodes: alerts open and resolve). While the readings flow,
faults are injected one after another at random moments: ``kill -9`` of the pipeline (down for 12 s,
longer than the models' silence timer, then restarted from its recovery snapshots), ``kill -9`` of
the alerts flow (restarted at once), Kafka, PostgreSQL and Mosquitto restarts, and once Kafka
unreachable for 60 s (bridge and producers buffer). After each fault it measures how long the flows
took to catch up with everything sent so far (telemetry rows, and anomaly scores, which pass through
the pipeline, Kafka and the alerts flow). At the end every output is compared with what a fault-free
run writes for the same input (tests/faults/outputs.py): telemetry rows, twin versions, anomaly
scores, forecasts, alert versions and episodes — lost, duplicated, changed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from benchmarks.machine import append_result
from benchmarks.processes import cleaning_up, exiting_cleanly, interruptible
from tests.faults.harness import FLOWS, SENSORS, Feeder, KafkaFeeder, MqttFeeder, Run, expected
from tests.faults.outputs import Tally, compare, table
from tests.private_stack import PrivateStack

console = Console()
KINDS = {
    "pipeline": ("pipeline_kill9", "alerts_kill9", "kafka_restart", "postgres_restart", "mosquitto_restart"),
    "telemetry": ("flow_kill9", "kafka_restart", "postgres_restart", "mosquitto_restart"),
}
PIPELINE_DOWN_S = 12.0  # longer than the models' silence timer (ml.sensor_health.silence_min_s)


def inject(kind: str, stack: PrivateStack, run: Run) -> float:
    """Apply one fault; returns the outage in seconds (until the component is back)."""
    t0 = time.monotonic()
    if kind == "flow_kill9":
        run.restart("flow")
    elif kind == "pipeline_kill9":
        run.restart("flow", down_s=PIPELINE_DOWN_S)
    elif kind == "alerts_kill9":
        run.restart("alerts")
    elif kind == "kafka_outage_60s":
        stack.restart("kafka", downtime=60)
    else:
        stack.restart(kind.removesuffix("_restart"), downtime=1)
    return time.monotonic() - t0


def catch_up_targets(run: Run, feeders: list[Feeder], plan) -> dict[str, int]:
    """Rows (and, for the pipeline, anomaly scores) that everything sent so far must give."""
    targets = {"rows": sum(f.sent for f in feeders) * len(SENSORS)}
    if plan is not None:
        sent = {t: n for f in feeders for t, n in f.sent_per_twin().items()}
        targets["scores"] = plan.upto(sent)[1]
    return targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow", choices=FLOWS, default="pipeline", help="pipeline (+ alerts flow) or telemetry")
    ap.add_argument("--readings", type=int, default=200_000, help="envelopes (2 sensor values each)")
    ap.add_argument("--faults", type=int, default=8)
    ap.add_argument(
        "--rate", type=float, help="envelopes/s, all feeders together (default: pipeline 1,000, telemetry 2,500)"
    )
    ap.add_argument("--twins", type=int, default=100)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    if args.rate is None:  # the pipeline does far more per reading: a rate it keeps up with on a busy machine
        args.rate = 1000.0 if args.flow == "pipeline" else 2500.0
    rng = random.Random(args.seed)
    kinds_of_flow = KINDS[args.flow]
    kinds = ["kafka_outage_60s"] + [kinds_of_flow[i % len(kinds_of_flow)] for i in range(args.faults - 1)]
    rng.shuffle(kinds)

    mqtt_n = args.readings // 10
    kafka_n = args.readings - mqtt_n
    records: list[tuple[int, str, float, float]] = []
    started = time.monotonic()
    # SIGTERM and SIGINT (which background jobs ignore) alike stop the flows and the private stack
    # (interruptible, below), also when they come while it is being stopped.
    with exiting_cleanly(PrivateStack(prefix="twinflow-bench-faults-")) as stack:
        console.print(f"private stack in {stack.root}")
        workdir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
        run = None
        try:
            run = Run.create(stack, workdir, "bench", flow=args.flow)
            run.start_flow(recovery=True)
            run.start_bridge()
            run.wait_started()
            mqtt_twins = max(1, args.twins // 10)
            feeders: list[Feeder] = [
                KafkaFeeder(run, args.twins, kafka_n, args.rate * 0.9),
                MqttFeeder(run, mqtt_twins, mqtt_n, args.rate * 0.1, run.settings.mqtt),
            ]
            feeders[1].twins = [f"{run.prefix}-mqtt-{i:03d}" for i in range(mqtt_twins)]
            plan = None
            if args.flow == "pipeline":  # per twin, which readings give scores (catch-up targets)
                plan = expected(run, feeders, sent=True)
                console.print(
                    f"a fault-free run writes {len(plan.versions):,} twin versions, {len(plan.scores):,} scores, "
                    f"{len(plan.alerts)} alert versions in {len(plan.episodes)} episodes"
                )
            feed_started = time.monotonic()
            for f in feeders:
                f.start()
            feed_s = args.readings / args.rate
            for i, kind in enumerate(kinds, 1):
                time.sleep(rng.uniform(1.0, max(1.5, feed_s / (args.faults + 2) / 2)))
                at = time.monotonic() - feed_started
                outage = inject(kind, stack, run)
                targets = catch_up_targets(run, feeders, plan)
                over = time.monotonic()
                caught_up = run.wait_counts(targets, timeout=900) - over
                records.append((i, kind, outage, caught_up))
                console.print(
                    f"fault {i:2d} at {at:5.0f} s {kind:<18} outage {outage:5.1f} s, caught up {caught_up:5.1f} s later"
                )
            for f in feeders:
                f.join()
            errors = [e for f in feeders for e in f.errors]
            if args.flow == "pipeline":
                want = expected(run, feeders)
                run.wait_outputs(want, timeout=1200, quiet_s=10.0)
                tallies = compare(want, run.observe())
            else:
                run.wait_rows(sum(f.acked for f in feeders) * len(SENSORS), timeout=900)
                time.sleep(2)
                rows, distinct = run.rows()
                expected_rows = args.readings * len(SENSORS)
                tallies = [Tally("telemetry rows", expected_rows, rows, expected_rows - distinct, rows - distinct)]
            alive = run.alive()
        finally:
            with cleaning_up():
                if run is not None:
                    run.close()
                shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - started
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for _i, kind, outage, caught in records:
        by_kind.setdefault(kind, []).append((outage, caught))
    lines = [
        f"{args.readings:,} readings (envelopes of {len(SENSORS)} values; {mqtt_n:,} via MQTT), "
        f"{len(records)} faults, flow `{args.flow}`, wall time {wall:.0f} s.",
        "",
        table(tallies),
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
    what = "telemetry rows and anomaly scores" if args.flow == "pipeline" else "telemetry rows"
    down = f", the pipeline down {PIPELINE_DOWN_S:.0f} s" if args.flow == "pipeline" else ""
    body = "\n".join(lines) + (
        f"\n\nFeed rate {args.rate:,.0f} envelopes/s (90 % Kafka producer, 10 % MQTT QoS 1 → bridge), "
        f"{args.twins} twins, seed {args.seed}. *Outage*: from the fault until the component is back "
        f"(kill -9 + restart of a flow{down}; stop + start of a service). "
        f"*Caught up*: from then until the {what} of every reading sent so far (including what producers "
        f"buffered during the fault) are in PostgreSQL. Processes "
        f"{'survived every fault' if alive else 'DIED'}; producer/publisher errors: {len(errors)}."
    )
    console.print(body)
    if not args.no_record:
        title = "fused pipeline and alerts flow" if args.flow == "pipeline" else "ingest path"
        append_result(
            f"Fault injection: {title} under random faults",
            f"python -m benchmarks.faults --flow {args.flow} --readings {args.readings} --faults {args.faults} "
            f"--rate {args.rate:g} --twins {args.twins} --seed {args.seed}",
            body,
        )
    clean = all(t.clean for t in tallies)
    if not clean or errors or not alive:
        sys.exit(f"outputs {'clean' if clean else 'NOT clean'}, errors {errors[:3]}, processes alive: {alive}")


if __name__ == "__main__":
    with interruptible("its flows, bridge and private stack are stopped and removed"):
        main()
