"""How many twin versions (whole state documents, history rows) one reading makes, per data shape.

    python -m benchmarks.versions --readings 3000

Runs :class:`operators.twin.reconcile.Reconciler` under the default policy (deadband 1 % of the value
for measurements, docs/reconciliation.md) on one twin of 5 sensors, in-process, for the benchmarks'
two shapes of readings (``benchmarks.ingest.SHAPES``: ``ramp``, every value moves by 1 per reading;
``steady``, values with 0.3 % noise, a transmitter's) and for steady values with 3 % noise
(vibration). A version is made only when a value leaves the deadband of its last versioned value.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from benchmarks.ingest import SHAPES as BENCH_SHAPES
from benchmarks.processes import interruptible
from operators.records.twin import Reported
from operators.twin.reconcile import Reconciler
from operators.twin.state import StateChange, TwinState
from operators.twin.sync_strategy import TwinPolicy

SHAPES: dict[str, Callable[[random.Random, int, int], float]] = {
    "e2e benchmark ramp (seq % 1000 + j; --shape ramp)": BENCH_SHAPES["ramp"],
    "steady, 0.3 % noise (--shape steady)": BENCH_SHAPES["steady"],
    "steady, 3 % noise": lambda rng, seq, j: 100.0 * (1 + j) * (1 + rng.gauss(0, 0.03)),
}


def versions_per_reading(shape: Callable[[random.Random, int, int], float], readings: int) -> float:
    rec, state, rng = Reconciler(TwinPolicy()), TwinState("bench"), random.Random(7)
    t0, versions = datetime(2026, 1, 1, tzinfo=UTC), 0
    for seq in range(readings):
        values = {f"s{j}": shape(rng, seq, j) for j in range(5)}
        out = rec.apply(state, Reported(t0 + timedelta(milliseconds=10 * seq), seq, "bench", values))
        versions += sum(isinstance(o, StateChange) for o in out)
    return versions / readings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=3000)
    args = ap.parse_args()
    for name, shape in SHAPES.items():
        print(f"{name}: {versions_per_reading(shape, args.readings):.2f} versions per reading")


if __name__ == "__main__":
    with interruptible("it keeps everything in memory"):
        main()
