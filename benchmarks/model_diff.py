"""How far the live models' outputs move between two checkouts (a change that alters numbers slightly).

    python -m benchmarks.model_diff --baseline /tmp/base --twins 10 --readings 6000

Steps synthetic twins (5 sensors of very different scales: AR(1) noise, then a level shift, a
spike, a ramp, a noisier stretch and a lasting change) through the live models step
(:func:`operators.ml.live_step.step`, default settings: anomaly + forecasts) in this checkout and
in ``--baseline DIR`` (its own ``.venv`` if it has one), and compares every output: anomaly scores (largest
difference, ``is_anomaly`` and ``kind`` changes, alarm episodes) and forecasts (the value, and how
far each interval bound moved relative to the interval's half-width). No stack needed.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def outputs(twins: int, readings: int) -> list[list[tuple]]:
    """Every twin's outputs as tuples: ("s", t, score, is_anomaly, kind) and ("f", t, sensor,
    predicted, lower, upper)."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    # (from live_step: this script also runs in the baseline checkout, where live_state may not exist)
    from operators.ml.live_step import LiveModelConfig, Reading, step
    from operators.records.alerts import AnomalyScore, ForecastPoint
    from twinflow.settings import load_settings

    cfg = LiveModelConfig(load_settings().ml.model_config_for(failure=False))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    scale = np.array([1.0, 0.01, 100.0, 5.0, 1e4])
    result = []
    for twin in range(twins):
        rng = np.random.default_rng(100 + twin)
        z = np.zeros((readings, 5))
        for t in range(1, readings):
            z[t] = 0.8 * z[t - 1] + rng.normal(size=5)
        x = z * scale + np.array([50.0, 1.0, 1e5, 20.0, 1e6])
        x[2000:2100, 1] += 4 * scale[1]  # a level shift
        x[3000:3001, 3] += 12 * scale[3]  # a spike
        x[3500:4000, 0] += np.linspace(0, 6, len(x[3500:4000]))  # a ramp
        x[4200:4400, 2] += rng.normal(size=len(x[4200:4400])) * 3 * scale[2]  # noisier
        x[4600:, 4] += 2 * scale[4]  # a lasting change
        state, out = None, []
        for t in range(readings):
            sample = Reading(t0 + timedelta(seconds=t), {f"s{i}": float(v) for i, v in enumerate(x[t])})
            state, records = step(state, sample, cfg)
            for r in records:
                if isinstance(r, AnomalyScore):
                    out.append(("s", t, r.score, r.is_anomaly, r.kind))
                elif isinstance(r, ForecastPoint):
                    out.append(("f", t, r.sensor, r.predicted, r.lower, r.upper))
        result.append(out)
    return result


def compare(base: list[list[tuple]], this: list[list[tuple]]) -> dict[str, float]:
    """The differences of two runs' outputs (the same records, in the same order, expected)."""
    d: dict[str, float] = dict.fromkeys(("scores", "differ", "flips", "kinds", "episodes_base", "episodes_this"), 0)
    d.update(max_dscore=0.0, forecasts=0, value_changed=0, bounds_moved=0, max_dbound=0.0)
    for tb, tt in zip(base, this, strict=True):
        on_b = on_t = False
        for rb, rt in zip(tb, tt, strict=True):
            assert rb[:2] == rt[:2], f"the outputs differ in kind or time: {rb[:2]} vs {rt[:2]}"
            if rb[0] == "s":
                d["scores"] += 1
                if rb[2] != rt[2] and not (math.isnan(rb[2]) and math.isnan(rt[2])):
                    d["differ"] += 1
                    d["max_dscore"] = max(d["max_dscore"], abs(rb[2] - rt[2]))
                d["flips"] += rb[3] != rt[3]
                d["kinds"] += rb[4] != rt[4]
                d["episodes_base"] += rb[3] and not on_b
                d["episodes_this"] += rt[3] and not on_t
                on_b, on_t = rb[3], rt[3]
                continue
            d["forecasts"] += 1
            d["value_changed"] += rb[3] != rt[3]
            if rb[4] is None or rt[4] is None or math.isnan(rb[4]):
                continue
            half = rb[5] - rb[3]
            for a, b in ((rb[4], rt[4]), (rb[5], rt[5])):
                if a != b:
                    d["bounds_moved"] += 1
                    d["max_dbound"] = max(d["max_dbound"], abs(a - b) / half if half else math.inf)
    return d


def run_in(checkout: Path, twins: int, readings: int) -> list[list[tuple]]:
    """:func:`outputs` computed by ``checkout``'s code (and virtualenv, if it has one)."""
    from benchmarks.processes import checkout_python  # here: the --dump run imports this file in the other checkout

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outputs.pkl"
        cmd = [checkout_python(checkout), __file__, "--dump", str(out), "--twins", str(twins)]
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        subprocess.run([*cmd, "--readings", str(readings)], cwd=checkout, env=env, check=True)
        return pickle.loads(out.read_bytes())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another checkout of the project (its .venv if it has one)")
    ap.add_argument("--twins", type=int, default=10)
    ap.add_argument("--readings", type=int, default=6000, help="readings per twin")
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # internal: write this checkout's outputs
    args = ap.parse_args(argv)
    if args.dump:
        args.dump.write_bytes(pickle.dumps(outputs(args.twins, args.readings)))
        return
    if args.baseline is None:
        ap.error("--baseline DIR is needed (the checkout to compare with)")
    d = compare(run_in(args.baseline, args.twins, args.readings), run_in(ROOT, args.twins, args.readings))
    print(
        f"{args.twins} twins × {args.readings:,} readings, {args.baseline} → this checkout\n"
        f"anomaly scores: {d['scores']:,}, {d['differ']:,} differ, largest difference {d['max_dscore']:.2g}; "
        f"is_anomaly changed {d['flips']}, kind changed {d['kinds']}; "
        f"alarm episodes {d['episodes_base']} → {d['episodes_this']}\n"
        f"forecasts: {d['forecasts']:,}, values changed {d['value_changed']}, interval bounds moved "
        f"{d['bounds_moved']:,}, by at most {d['max_dbound']:.3g} of the half-width"
    )


if __name__ == "__main__":
    sys.exit(main())
