"""Counters coarse for the sample rate (docs/ml.md, "What the models do with each kind of signal").

An energy register in whole kWh read every second steps once every few hundred readings. Each case
is a generated file (1 Hz, ``--rows`` rows: a temperature and a pressure wandering together, plus the
register) replayed with ``twinflow replay`` (the documented entry point) as it comes ("level":
detection decides) and with the register named in ``[ml.counters] sensors`` ("named"). Per case:
rows flagged (``is_anomaly``), rows with a ``condition`` kind and rows with any alert kind. A
``--checkout`` runs another tree's code (a ``git archive`` of a base commit) on the same files.

    PYTHONPATH=. python -m benchmarks.coarse_counters
    PYTHONPATH=. python -m benchmarks.coarse_counters --checkout /tmp/base --cases 7kw
    PYTHONPATH=. python -m benchmarks.coarse_counters --cases 7kw --env TWINFLOW_ML__COUNTERS__RISES=5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.replay_cli import REPO, ReplayFailed, replay_csv, temp_and_pressure, write_csv_1hz

# name -> (kWh per second, resolution in kWh, second at which the machine stops or None)
CASES: dict[str, tuple[float, float, int | None]] = {
    "7kw": (0.002, 1.0, None),  # a step every ~500 readings: the docs' row
    "18kw": (0.005, 1.0, None),  # every ~200 readings
    "72kw": (0.02, 1.0, None),  # every ~50: detected after 20 steps (1,000 s)
    "7kw-stops": (0.002, 1.0, 2000),  # the machine stops at 2,000 s: the register stops stepping
    "fine": (0.02, 0.001, None),  # a register fine enough to step every reading (control)
}


def write_case(path: Path, rows: int, per_s: float, resolution: float, stop: int | None, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    load = np.cumsum(rng.normal(0, 0.01, rows))
    used = np.abs(rng.normal(per_s, per_s / 4, rows))
    if stop is not None:
        used[stop:] = 0.0
    energy = np.floor((12345.0 + np.cumsum(used)) / resolution) * resolution
    write_csv_1hz(path, {**temp_and_pressure(rng, load), "energy_kwh": energy})


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=3000, help="readings per file (1 Hz)")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--checkout", type=Path, default=REPO, help="tree whose code replays (default: this one)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for every replay")
    args = ap.parse_args(argv)
    extra = dict(e.split("=", 1) for e in args.env)
    rows: list[dict[str, object]] = []
    print("| case | scored as | rows | flagged | condition rows | alert rows |\n|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="coarse-") as tmp:
        for case in args.cases:
            src = Path(tmp) / f"{case}.csv"
            write_case(src, args.rows, *CASES[case])
            for how, env in (("level", {}), ("named", {"TWINFLOW_ML__COUNTERS__SENSORS": '["*_kwh"]'})):
                out = Path(tmp) / f"{case}-{how}.csv"
                try:
                    got = replay_csv(src, out, "coarse-1", {**extra, **env}, tree=args.checkout.resolve(), timeout=1800)
                except ReplayFailed as exc:
                    raise SystemExit(str(exc)) from None
                kind = got["kind"].fill_null("")
                row = {
                    "case": case,
                    "as": how,
                    "rows": got.height,
                    "flagged": int(got["is_anomaly"].sum()),
                    "condition": int((kind == "condition").sum()),
                    "alerts": int((kind != "").sum()),
                }
                rows.append(row)
                print("| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()) + " |")
    return rows


if __name__ == "__main__":
    main()
