"""Cost of the per-twin online models (``make bench-ml-cost``): records/s for score+learn on one
core at 5 and 20 sensors, the pickled state size per twin (what Bytewax snapshots), the RSS of
one process holding many twins' live model states and the CPU of their recovery snapshots.

    python -m benchmarks.ml_cost --memory-only --fleet-twins 2000 --twins 100000  # issue 16's goal

The memory measurement steps ``--fleet-twins`` twins for real and projects to ``--twins`` (per-twin
state is independent, so RSS grows linearly); ``--fleet-twins 100000`` measures the full fleet
(about 2 hours of one core at 1,200 readings per twin)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.data import append_results
from flows.snapshots import to_snapshot
from operators.ml.config import FailureConfig, ForecastConfig, ModelConfig
from operators.ml.twin_model import TwinModel

VARIANTS = {
    "anomaly": ModelConfig(),
    "anomaly + forecasts": ModelConfig(forecast=ForecastConfig()),
    "anomaly + forecasts + failure features": ModelConfig(forecast=ForecastConfig(), failure=FailureConfig()),
}
# The same anomaly detector on twins that also report a setpoint (operators/ml/operating_point.py):
# one constant context reading `load_sp` next to the sensors (the steady-state cost).
SETPOINT_VARIANT = "anomaly + operating point (+1 setpoint)"


def stream(n: int, d: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    z = np.zeros((n, d))
    for t in range(1, n):
        z[t] = 0.8 * z[t - 1] + rng.normal(size=d)
    return [{f"sensor_{i:02d}": float(v) for i, v in enumerate(row)} for row in z + 50.0]


def measure(cfg: ModelConfig, rows: list[dict[str, float]], warm: int) -> tuple[float, int]:
    model = TwinModel(cfg)
    for t, r in enumerate(rows[:warm]):
        model.update(t, r)
    t0 = time.process_time()
    for t, r in enumerate(rows[warm:], start=warm):
        model.update(t, r)
    rate = (len(rows) - warm) / (time.process_time() - t0)
    return rate, len(to_snapshot(model))


def fleet_memory(twins: int, samples: int, sensors: int = 5) -> tuple[float, float, tuple[float, float]]:
    """RSS growth (MiB) of one process holding ``twins`` live-flow model states (default settings,
    anomaly + forecasts), each fed ``samples`` readings; returns (MiB in all, KiB per twin) and
    :func:`snapshot_cost`."""
    import gc
    from datetime import UTC, datetime, timedelta

    import psutil

    from operators.ml.live_state import LiveModelConfig
    from operators.ml.live_step import Reading, step
    from twinflow.settings import load_settings

    cfg = LiveModelConfig(load_settings().ml.model_config_for(failure=False))
    rows = stream(samples, sensors)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    times = [t0 + timedelta(seconds=i) for i in range(samples)]
    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    states = []
    for _ in range(twins):
        state = None
        for ts, r in zip(times, rows, strict=True):
            state, _out = step(state, Reading(ts, r), cfg)
        states.append(state)
    gc.collect()
    grown = (proc.memory_info().rss - before) / 2**20
    return grown, grown * 1024 / twins, snapshot_cost(states)


def snapshot_cost(states: list) -> tuple[float, float]:
    """CPU µs and KiB of one recovery snapshot per twin (:func:`flows.snapshots.to_snapshot`, what
    the flow does for every twin it touched in an epoch), over up to 1,000 of ``states``."""
    sample = states[:1000]
    t0 = time.process_time()
    size = sum(len(to_snapshot(s)) for s in sample)
    return (time.process_time() - t0) * 1e6 / len(sample), size / 1024 / len(sample)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=5000, help="scored records per measurement")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--fleet-twins", type=int, default=1000, help="twins held in memory at once (0: skip)")
    ap.add_argument("--fleet-samples", type=int, default=1200, help="readings per twin (past calibration)")
    ap.add_argument("--twins", type=int, default=100_000, help="fleet size the memory is projected to")
    ap.add_argument("--memory-only", action="store_true", help="only the fleet memory (no records/s table)")
    args = ap.parse_args(argv)
    if args.memory_only:
        lines: list[str] = []
    else:
        lines = throughput(args.records)
    if args.fleet_twins:
        mib, kib, (snap_us, snap_kib) = fleet_memory(args.fleet_twins, args.fleet_samples)
        projected = "measured" if args.twins == args.fleet_twins else f"projected from {args.fleet_twins:,}"
        lines += [
            "",
            f"Memory of the live models flow's state: {args.fleet_twins:,} twins × {args.fleet_samples:,} "
            f"readings of 5 sensors (default settings: anomaly + forecasts) grow one process's RSS by "
            f"{mib:,.0f} MiB = {kib:,.1f} KiB per twin → {kib * args.twins / 2**20:,.2f} GiB for "
            f"{args.twins:,} twins ({projected}; per-twin state is independent, so it scales linearly).",
            "",
            f"Recovery snapshot of one twin's model state: {snap_us:,.0f} µs CPU, {snap_kib:,.1f} KiB. Every "
            f"twin a flow touched in an epoch is snapshotted at its end: 10,000 active twins cost "
            f"{snap_us * 10_000 / 1e6:,.2f} s of CPU per epoch (flow.snapshot_interval_s, default 30 s).",
        ]
        print("\n".join(lines[-3:]), flush=True)
    note = (
        ""
        if args.memory_only
        else (
            "\n\nFailure features keep each sample's features until a failure or repair labels them "
            "(bounded by ml.failure.max_history), so that state grows with time since the last event. "
            "The operating-point variant keeps its setpoint constant (steady-state cost); a setpoint change "
            "costs a settle period without scoring and one small least-squares fit."
        )
    )
    given = " ".join(sys.argv[1:] if argv is None else argv)
    command = f".venv/bin/python -m benchmarks.ml_cost {given}" if given else "make bench-ml-cost"
    if not args.no_write:
        append_results("ML cost per twin", command, "\n".join(lines).strip() + note)


def throughput(records: int) -> list[str]:
    """The records/s and pickled-state table (one line per variant and sensor count)."""
    warm = 1000
    lines = ["| models | sensors | records/s (score+learn, 1 core) | state per twin |", "|---|---|---|---|"]
    for name, cfg in VARIANTS.items():
        for d in (5, 20):
            rate, size = measure(cfg, stream(warm + records, d), warm)
            note = f" (after {warm + records} samples)" if cfg.failure else ""
            lines.append(f"| {name} | {d} | {rate:,.0f} | {size / 1024:,.0f} KiB{note} |")
            print(lines[-1], flush=True)
    for d in (5, 20):
        rows = [{**row, "load_sp": 100.0} for row in stream(warm + records, d)]
        rate, size = measure(ModelConfig(), rows, warm)
        lines.append(f"| {SETPOINT_VARIANT} | {d} | {rate:,.0f} | {size / 1024:,.0f} KiB |")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
