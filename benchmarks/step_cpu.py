"""CPU of the live models step alone, per 1,000 readings, in flow-sized batches, and a digest of its records.

    python -m benchmarks.step_cpu --baseline /tmp/base --repeat 5     # before/after, same input
    python -m benchmarks.step_cpu --twins 50 --readings 3000 --batch 100

Steps ``--twins`` synthetic twins (5 sensors: a slow sine, noise, and now and then a level shift
on one sensor of every 7th twin) through ``operators.ml.live_step.step_many`` with the settings a
live flow runs (``flows.models.live_config``), ``--batch`` readings per twin and call (what a polled
batch of 5,000 readings holds per twin at 50 twins), in its own process, in this checkout and in
``--baseline DIR`` (its own ``.venv`` if it has one: a ``git archive`` of a recent commit needs
none), alternating ``--repeat`` times. Printed per run: the CPU
time of the step calls only (no Kafka, no decoding, no start-up) per 1,000 readings, and a sha256
of every record's ``repr`` (equal = the same output). On a machine shared with other jobs the CPU
time of one run moves by tens of percent: compare the minimum of several alternating runs.
No stack needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
from pathlib import Path

from benchmarks.processes import checkout_python

ROOT = Path(__file__).resolve().parent.parent

# Runs in the checkout under test (uses only what every version of the live step has).
WORKER = """
import hashlib, math, random, sys, time
from datetime import UTC, datetime, timedelta
from flows.models import live_config
from operators.ml.live_step import Reading, step_many
from twinflow.settings import load_settings

twins, n, batch = map(int, sys.argv[1:4])
cfg = live_config(load_settings())
t0 = datetime(2026, 12, 1, tzinfo=UTC)
rng = random.Random(1)

def reading(twin, seq):
    v = {f"s{j}": 10.0 * j + math.sin(seq / 50 + j) + rng.gauss(0, 0.1) for j in range(5)}
    if twin % 7 == 0 and seq > 2000 and seq % 500 < 30:
        v["s1"] += 3.0
    return Reading(t0 + timedelta(milliseconds=seq * 10), v)

data = [[reading(tw, s) for s in range(n)] for tw in range(twins)]
states, digest, cpu, records = {}, hashlib.sha256(), 0.0, 0
for start in range(0, n, batch):
    for tw in range(twins):
        c = time.process_time()
        states[tw], out = step_many(states.get(tw), data[tw][start : start + batch], cfg, f"t{tw}")
        cpu += time.process_time() - c
        records += len(out)
        for r in out:
            digest.update(repr(r).encode())
print(f"{1000 * cpu / (n * twins / 1000):.2f} {records} {digest.hexdigest()[:16]}")
"""


def run(checkout: Path, twins: int, readings: int, batch: int) -> tuple[float, int, str]:
    """One run in ``checkout``: (CPU ms per 1k readings, records, digest)."""
    out = subprocess.run(
        [checkout_python(checkout), "-c", WORKER, str(twins), str(readings), str(batch)],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        check=True,
        capture_output=True,
        text=True,
    )
    ms, records, digest = out.stdout.split()[-3:]
    return float(ms), int(records), digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another checkout of the project (its .venv if it has one)")
    ap.add_argument("--twins", type=int, default=50)
    ap.add_argument("--readings", type=int, default=3000, help="readings per twin")
    ap.add_argument("--batch", type=int, default=100, help="readings per twin and step_many call")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    checkouts = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    runs: dict[str, list[float]] = {name: [] for name in checkouts}
    digests: set[str] = set()
    for k in range(args.repeat):
        for name, path in checkouts.items():
            ms, records, digest = run(path, args.twins, args.readings, args.batch)
            runs[name].append(ms)
            digests.add(digest)
            print(f"{name:8s} run {k}: {ms:6.1f} ms CPU per 1k readings, {records:,} records, digest {digest}")
    for name, values in runs.items():
        print(f"{name}: min {min(values):.1f}, median {statistics.median(values):.1f} ms CPU per 1k readings")
    print("same output in every run" if len(digests) == 1 else f"OUTPUTS DIFFER: {sorted(digests)}")


if __name__ == "__main__":
    main()
