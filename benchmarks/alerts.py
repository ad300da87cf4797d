"""Benchmark: the alert lifecycle operator (records/s) and the model-output/alert writers (rows/s).

    python -m benchmarks.alerts --records 200000 --twins 500 --db-rows 50000
    python -m benchmarks.alerts --records 200000 --twins 200 --per-second 22 --db-rows 0  # as benchmarks.latency

The operator part is plain Python (no Kafka): anomaly scores for T twins, one a second per twin
(``--per-second``), with a 5-minute fault every 15 minutes per twin, through
``operators.alerts.ordering.step``, and a recovery snapshot of every twin at the end of every
epoch of event time (``flow.snapshot_interval_s``), as the flow takes them (its cost: the mean
of the later half of the epochs, ``reorder_window_s`` of each twin's scores held). The database part
upserts anomaly scores through ``ModelOutputSink`` in batches of 1000 and the
alert versions the operator produced through ``AlertSink``; the rows are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

from benchmarks.cleanup import delete_run_rows
from benchmarks.machine import append_result
from benchmarks.ml_cost import snapshot_cost
from benchmarks.processes import cleaning_up, interruptible
from connectors.postgres.alert_sinks import AlertSink, ModelOutputSink
from operators.alerts.ordering import step
from operators.alerts.rules import AlertRules
from operators.records.alerts import AnomalyScore, decode, encode
from twinflow.settings import load_settings


def records(n: int, twins: int, prefix: str, per_second: float = 1.0) -> list[AnomalyScore]:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=n // twins / per_second + 60)
    ids = [f"{prefix}-{i:05d}" for i in range(twins)]
    contrib = {"vibration": 0.6, "temp_c": 0.3, "rpm": 0.1}
    out = []
    for i in range(n):
        s = i // twins / per_second
        faulty = (s + 97 * (i % twins)) % 900 < 300  # a 5-minute fault every 15 minutes
        score = 2.0 if faulty else 0.3
        out.append(AnomalyScore(ids[i % twins], t0 + timedelta(seconds=s), score, 1.0, faulty, contrib))
    return [decode(AnomalyScore, encode(r)) for r in out]  # as the flow has them: each decoded from its message


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--twins", type=int, default=500)
    p.add_argument("--per-second", type=float, default=1.0, help="scores per twin and second of event time")
    p.add_argument("--db-rows", type=int, default=50_000)
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    a = p.parse_args()
    prefix = f"bench-al-{uuid.uuid4().hex[:6]}"
    recs = records(a.records, a.twins, prefix, a.per_second)
    rules = AlertRules()

    states: dict[str, object] = {}
    alerts = []
    settings = load_settings()
    epoch = max(int(a.twins * a.per_second * settings.flow.snapshot_interval_s), 1)  # records per epoch
    snaps: list[tuple[float, float]] = []
    snap_s = 0.0
    start = time.perf_counter()
    for i, r in enumerate(recs, 1):
        st, out = step(states.get(r.twin_id), r, rules)  # type: ignore[arg-type]
        states[r.twin_id] = st
        alerts += out
        if i % epoch == 0:  # the end of an epoch: the flow snapshots every twin it touched
            t = time.perf_counter()
            snaps.append(snapshot_cost(list(states.values())))
            snap_s += time.perf_counter() - t
    held = sum(len(st.held) for st in states.values()) / len(states)  # type: ignore[attr-defined]
    steady = snaps[len(snaps) // 2 :] or [snapshot_cost(list(states.values()))]  # the window filled
    snap_us, snap_kib = (sum(x) / len(steady) for x in zip(*steady, strict=True))
    for st in states.values():
        alerts += st.flush()  # type: ignore[attr-defined]
    op_s = time.perf_counter() - start - snap_s

    conninfo = settings.postgres.conninfo()
    rows = recs[: a.db_rows]
    outputs, versions = ModelOutputSink(conninfo).open(), AlertSink(conninfo).open()
    try:  # the run's rows go again, also after a failure, Ctrl-C or SIGTERM
        start = time.perf_counter()
        for i in range(0, len(rows), 1000):
            outputs.write(rows[i : i + 1000])
        db_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(alerts), 500):
            versions.write(alerts[i : i + 500])
        al_s = time.perf_counter() - start
    finally:  # (the writers' connections first: an interrupted upsert's row locks would block the delete)
        with cleaning_up():
            outputs.close()
            versions.close()
            delete_run_rows(conninfo, ("anomaly_scores", "alerts", "alert_events"), prefix)

    body = (
        "| part | items | wall time | items/s |\n|---|---:|---:|---:|\n"
        f"| operator (`step`, {a.twins} twins) | {len(recs):,} records → {len(alerts):,} alert versions "
        f"| {op_s:.2f} s | {len(recs) / op_s:,.0f} |\n"
        f"| a twin's recovery snapshot per epoch ({held:,.0f} records held, {a.per_second:g} scores/s per twin) "
        f"| {snap_kib:,.1f} KiB | {snap_us:,.0f} µs CPU | |\n"
        f"| `ModelOutputSink` (anomaly scores, batches of 1000) | {len(rows):,} rows | {db_s:.2f} s "
        f"| {len(rows) / max(db_s, 1e-9):,.0f} |\n"
        f"| `AlertSink` (alerts upsert + alert_events, batches of 500) | {len(alerts):,} versions "
        f"| {al_s:.2f} s | {len(alerts) / al_s:,.0f} |\n\n"
        "Single process; PostgreSQL on the same machine, shared with other work "
        f"(load average {os.getloadavg()[0]:.1f})."
    )
    cmd = (
        f"python -m benchmarks.alerts --records {a.records} --twins {a.twins} --per-second {a.per_second:g} "
        f"--db-rows {a.db_rows}"
    )
    print(body)
    if not a.no_record:
        append_result("Alerts: lifecycle operator and writers", cmd, body)


if __name__ == "__main__":
    with interruptible("the run's rows are deleted"):
        main()
