"""Generalisation suite (``make bench-generalisation``): synthetic patterns through ``twinflow replay``.

Not one data set but the patterns real ones are made of, each with several seeds, scored the
way public benchmarks score detectors — so defaults are chosen for the general case:

* **univariate**, NAB-like (4,000 rows at 5 min): level shift, variance change, trend onset,
  change of a seasonal pattern, spikes, a stuck value, a drop-out to zero; healthy series with
  daily seasonality, and with gaps in time;
* **multivariate**, pump-like (4 h at 1 Hz, a speed setpoint that changes every 20–60 min, flow ∝
  speed, head ∝ speed², power ∝ speed³, a lagging temperature with a wandering ambient): slow
  bearing wear, slow overheating, a drifting pressure transmitter, a growing leak (less flow at
  the same speed and power), a frozen flow transmitter, cavitation bursts, impacts; healthy.

Every file goes through :func:`connectors.csv_history.replay_files` — the code behind ``twinflow
replay`` — with default settings (``--set SECTION.FIELD=VALUE`` to try others), written as CSV
first, exactly as a user would. Scores:

* **NAB** (:func:`benchmarks.nab.corpus_score`, the published protocol: windows of 10 % of a file
  / its anomalies centred on each, probation, early detection rewarded, false positives
  penalised; the threshold on ``anomaly_score`` chosen for the whole corpus), per profile, and
  the same with ``is_anomaly`` as the score (the decisions, no threshold to choose);
* **caught**: an episode of ``is_anomaly`` starts within the anomaly's window (univariate) or
  between a fault's onset and end (multivariate), with its delay; **false episodes** start
  outside every window / fault (+ 10 min grace), per healthy series-day.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks import nab
from connectors.csv_history import replay_files
from operators.ml.config import ModelConfig
from twinflow.settings import MlSettings

T0 = datetime(2026, 3, 2, tzinfo=UTC)
UNI_ROWS, UNI_STEP_S = 4000, 300.0
MV_ROWS, MV_STEP_S = 14_400, 1.0
UNIVARIATE = (
    "level_shift",
    "variance_change",
    "trend",
    "seasonal_change",
    "spikes",
    "stuck",
    "dropout",
    "healthy_seasonal",
    "healthy_gaps",
)
MULTIVARIATE = (
    "bearing_wear",
    "overheating",
    "transmitter_drift",
    "leak",
    "frozen_flow",
    "cavitation",
    "impacts",
    "healthy_setpoints",
)
GRACE_S = 600.0


@dataclass
class Case:
    """One synthetic file: its table, the rows where anomalies start, and fault windows (rows)."""

    name: str
    pattern: str
    family: str  # univariate | multivariate
    frame: pl.DataFrame
    anomalies: list[int] = field(default_factory=list)
    faults: list[tuple[int, int]] = field(default_factory=list)  # (onset row, end row) multivariate
    step_s: float = UNI_STEP_S


# ----------------------------------------------------------------------------- univariate
def _ar(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(size=n) * math.sqrt(1 - phi * phi)
    out = np.empty(n)
    acc = rng.normal()
    for i in range(n):
        acc = phi * acc + e[i]
        out[i] = acc
    return out


def univariate(pattern: str, seed: int) -> Case:
    rng = np.random.default_rng(seed * 1000 + UNIVARIATE.index(pattern))
    n = UNI_ROWS
    t = np.arange(n)
    level = rng.uniform(10, 100)
    sigma = level * rng.uniform(0.01, 0.05)
    noise = sigma * _ar(rng, n, rng.uniform(0.3, 0.9))
    seasonal = pattern in ("seasonal_change", "healthy_seasonal") or rng.random() < 0.4
    amp = sigma * rng.uniform(2, 6) if seasonal else 0.0
    phase = rng.uniform(0, 2 * math.pi)
    season = amp * np.sin(2 * math.pi * t / 288 + phase)
    x = level + season + noise
    t0 = int(rng.uniform(0.35, 0.75) * n)
    anomalies = [t0]
    sign = rng.choice([-1.0, 1.0])
    if pattern == "level_shift":
        x[t0:] += sign * rng.uniform(4, 8) * sigma
    elif pattern == "variance_change":
        x[t0:] += noise[t0:] * rng.uniform(2, 4)
    elif pattern == "trend":
        x[t0:] += sign * 6 * sigma * (t[t0:] - t0) / 200
    elif pattern == "seasonal_change":
        x[t0:] = level + 0.2 * season[t0:] + noise[t0:]
    elif pattern == "spikes":
        t1 = min(t0 + int(rng.uniform(0.15, 0.25) * n), n - 50)
        anomalies = [t0, t1]
        for a in anomalies:
            x[a] += rng.choice([-1.0, 1.0]) * rng.uniform(6, 10) * (sigma + amp)
    elif pattern == "stuck":
        x[t0 : t0 + 150] = x[t0 - 1]
    elif pattern == "dropout":
        x[t0 : t0 + 20] = 0.0
    else:
        anomalies = []
    times = [T0 + timedelta(seconds=UNI_STEP_S * i) for i in range(n)]
    keep = np.ones(n, dtype=bool)
    if pattern == "healthy_gaps":
        for _ in range(3):
            start = int(rng.uniform(0.2, 0.9) * n)
            keep[start : start + int(rng.uniform(50, 200))] = False
    frame = pl.DataFrame({"timestamp": [times[i] for i in range(n) if keep[i]], "value": np.round(x[keep], 4)})
    return Case(f"uni-{pattern}-{seed}", pattern, "univariate", frame, anomalies)


# ----------------------------------------------------------------------------- multivariate
def _lag(x: np.ndarray, tau_s: float, dt: float) -> np.ndarray:
    a = 1.0 - math.exp(-dt / tau_s)
    out = np.empty_like(x)
    acc = x[0]
    for i, v in enumerate(x):
        acc += a * (v - acc)
        out[i] = acc
    return out


def multivariate(pattern: str, seed: int) -> Case:
    rng = np.random.default_rng(seed * 1000 + 100 + MULTIVARIATE.index(pattern))
    n, dt = MV_ROWS, MV_STEP_S
    t = np.arange(n) * dt
    # speed setpoint: a change every 20-60 min to 75-100 % of rated
    sp = np.empty(n)
    rated = rng.choice([1450.0, 2950.0])
    i, value = 0, rated
    while i < n:
        length = int(rng.uniform(1200, 3600) / dt)
        sp[i : i + length] = value
        i += length
        value = round(rated * rng.uniform(0.75, 1.0))
    speed = _lag(sp, 2.0, dt) + rng.normal(0, 0.3, n)
    u = speed / rated
    flow = 120 * u * (1 + 0.004 * _ar(rng, n, 0.7))
    pressure = 1.0 + 4.0 * u * u + 0.01 * _ar(rng, n, 0.5)
    power = 18 * u**3 * (1 + 0.003 * rng.normal(size=n))
    ambient = 25 + 1.5 * np.sin(2 * math.pi * t / (6 * 3600) + rng.uniform(0, 6))
    temp = _lag(ambient + 40 * power / 18, 120.0, dt) + rng.normal(0, 0.05, n)
    vib = 1.8 * u * u + 0.08 * _ar(rng, n, 0.3)
    onset = int(rng.uniform(1.6, 2.4) * 3600 / dt)
    end = n
    p = np.clip((t - onset * dt) / (3600 * rng.uniform(0.8, 1.2)), 0, None)  # 0 → 1 over about an hour
    active = t >= onset * dt
    if pattern == "bearing_wear":
        vib = vib + 3.0 * p**2
    elif pattern == "overheating":
        temp = temp + 15 * np.minimum(p * 1.5, 1.0)
    elif pattern == "transmitter_drift":
        pressure = pressure + 0.3 * p
    elif pattern == "leak":
        flow = flow * (1 - 0.12 * np.minimum(p, 1.0))
        power = power * (1 + 0.02 * np.minimum(p, 1.0))
    elif pattern == "frozen_flow":
        end = onset + int(1800 / dt)
        flow[onset:end] = flow[onset - 1]
    elif pattern == "cavitation":
        end = onset + int(1200 / dt)
        sl = slice(onset, end)
        pressure[sl] -= 0.15
        vib[sl] += np.abs(rng.normal(0, 0.6, end - onset))
    elif pattern == "impacts":
        end = onset + int(1200 / dt)
        hits = onset + np.cumsum(rng.integers(30, 90, 40))
        hits = hits[hits < end]
        vib[hits] += rng.uniform(4, 8, len(hits))
    del active
    faults = [] if pattern == "healthy_setpoints" else [(onset, end)]
    times = [T0 + timedelta(seconds=dt * k) for k in range(n)]
    frame = pl.DataFrame(
        {
            "timestamp": times,
            "speed_sp": sp,
            "speed_rpm": np.round(speed, 2),
            "flow_m3h": np.round(flow, 3),
            "pressure_bar": np.round(pressure, 4),
            "power_kw": np.round(power, 3),
            "temp_c": np.round(temp, 3),
            "vibration_mm_s": np.round(vib, 4),
        }
    )
    return Case(f"mv-{pattern}-{seed}", pattern, "multivariate", frame, [f[0] for f in faults], faults, dt)


def cases(seeds: int, families: tuple[str, ...] = ("univariate", "multivariate")) -> list[Case]:
    out = []
    for seed in range(seeds):
        if "univariate" in families:
            out += [univariate(p, seed) for p in UNIVARIATE]
        if "multivariate" in families:
            out += [multivariate(p, seed) for p in MULTIVARIATE]
    return out


# ----------------------------------------------------------------------------- scoring
def _episodes(flags: list[int]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, f in enumerate(flags):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(flags) - 1))
    return out


def judge(case: Case, out: pl.DataFrame) -> dict[str, Any]:
    """Caught anomalies (with delay in seconds) and false episodes of one file."""
    flags = out["is_anomaly"].to_list()
    n = len(flags)
    starts = [s for s, _ in _episodes(flags)]
    warm = nab.probation(n) if case.family == "univariate" else 0
    if case.family == "univariate":  # (caught between, not false between, anomaly row)
        spans = [(w, w, a) for w, a in zip(nab.nab_windows(n, case.anomalies), case.anomalies, strict=True)]
    else:
        grace = int(GRACE_S / case.step_s)
        spans = [((on, end - 1), (on, min(end + grace, n - 1)), on) for on, end in case.faults]
    caught, delays = 0, []
    for (lo, hi), _, a in spans:
        hit = next((s for s in starts if lo <= s <= hi), None)
        if hit is not None:
            caught += 1
            delays.append((hit - a) * case.step_s)
    false = [s for s in starts if s >= warm and not any(lo <= s <= hi for _, (lo, hi), _ in spans)]
    busy = sum(hi - max(lo, warm) + 1 for _, (lo, hi), _ in spans if hi >= warm)
    healthy_days = max(n - warm - busy, 0) * case.step_s / 86400.0
    return {
        "anomalies": len(spans),
        "caught": caught,
        "delays_s": delays,
        "false": len(false),
        "healthy_days": healthy_days,
    }


def run(seeds: int, cfg: ModelConfig, families: tuple[str, ...] = ("univariate", "multivariate")) -> dict[str, Any]:
    all_cases = cases(seeds, families)
    results: list[tuple[Case, pl.DataFrame]] = []
    t0 = time.perf_counter()
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in all_cases:
            path = Path(tmp) / f"{case.name}.csv"
            case.frame.write_csv(path)
            out = replay_files([path], "timestamp", None, [], cfg)
            rows += out.height
            results.append((case, out))
    elapsed = time.perf_counter() - t0
    report: dict[str, Any] = {"rows": rows, "seconds": elapsed, "families": {}, "patterns": {}}
    for family in families:
        fam = [(c, o) for c, o in results if c.family == family]
        scores = [(o["anomaly_score"].fill_null(0.0).to_list(), c.anomalies) for c, o in fam]
        decisions = [(o["is_anomaly"].cast(float).to_list(), c.anomalies) for c, o in fam]
        fr: dict[str, Any] = {}
        for prof, weights in nab.NAB_PROFILES.items():
            norm, thr, _counts = nab.corpus_score(scores, weights)
            fr[f"nab_{prof}"] = norm
            fr[f"threshold_{prof}"] = thr
            fr[f"decisions_{prof}"] = nab.corpus_score(decisions, weights)[0]
        report["families"][family] = fr
        thr = fr["threshold_standard"]
        for pattern in dict.fromkeys(c.pattern for c, _ in fam):
            group = [(c, o) for c, o in fam if c.pattern == pattern]
            judged = [judge(c, o) for c, o in group]
            gscores = [(o["anomaly_score"].fill_null(0.0).to_list(), c.anomalies) for c, o in group]
            gnab = nab.corpus_score(gscores, nab.NAB_PROFILES["standard"], threshold=thr)
            delays = [d for j in judged for d in j["delays_s"]]
            days = sum(j["healthy_days"] for j in judged)
            report["patterns"][pattern] = {
                "family": family,
                "files": len(group),
                "anomalies": sum(j["anomalies"] for j in judged),
                "caught": sum(j["caught"] for j in judged),
                "delay_median_s": float(np.median(delays)) if delays else None,
                "false_episodes": sum(j["false"] for j in judged),
                "false_per_day": sum(j["false"] for j in judged) / days if days else None,
                "nab_standard": gnab[0] if gnab[2]["windows"] else None,
                "false_rows_at_threshold": gnab[2]["false_rows"],
            }
    return report


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| family | NAB standard | low FP | low FN | decisions: standard | low FP | low FN |",
        "|---|---|---|---|---|---|---|",
    ]
    for fam, r in report["families"].items():
        lines.append(
            f"| {fam} | {_fmt(r['nab_standard'])} | {_fmt(r['nab_reward_low_fp'])} | {_fmt(r['nab_reward_low_fn'])} "
            f"| {_fmt(r['decisions_standard'])} | {_fmt(r['decisions_reward_low_fp'])} "
            f"| {_fmt(r['decisions_reward_low_fn'])} |"
        )
    lines += [
        "",
        "| pattern | family | files | caught | delay median | false episodes | per healthy day | NAB standard |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in report["patterns"].items():
        delay = p["delay_median_s"]
        lines.append(
            f"| {name} | {p['family']} | {p['files']} | {p['caught']}/{p['anomalies']} | "
            f"{_fmt(delay / 60 if delay is not None else None)} min | {p['false_episodes']} | "
            f"{_fmt(p['false_per_day'], 2)} | {_fmt(p['nab_standard'])} |"
        )
    return "\n".join(lines)


def _override(cfg: ModelConfig, pairs: list[str]) -> ModelConfig:
    sections: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        section, _, name = key.partition(".")
        current = sections.get(section, getattr(cfg, section))
        kind = type(getattr(current, name))
        value: Any = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        sections[section] = replace(current, **{name: value})
    return replace(cfg, **sections)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per pattern")
    ap.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="e.g. anomaly.threshold=0.6"
    )
    ap.add_argument("--family", choices=("univariate", "multivariate"), action="append", help="only these (repeat)")
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    cfg = _override(MlSettings().model_config_for(failure=False, forecasts=False), a.set)
    report = run(a.seeds, cfg, tuple(a.family or ("univariate", "multivariate")))
    text = markdown(report)
    print(text)
    print(f"{report['rows']:,} rows in {report['seconds']:.0f} s ({report['rows'] / report['seconds']:,.0f} rows/s)")
    if not a.no_write:
        from benchmarks.machine import append_result

        append_result(
            "Generalisation suite (synthetic patterns through twinflow replay)",
            "make bench-generalisation  (.venv/bin/python -m benchmarks.generalisation"
            + "".join(f" --set {s}" for s in a.set)
            + (f" --seeds {a.seeds}" if a.seeds != 3 else "")
            + ")",
            f"{a.seeds} seeds per pattern; settings: {', '.join(a.set) or 'defaults'}. NAB: the published "
            "protocol (benchmarks/nab.py), threshold on anomaly_score optimised per family and profile; "
            "'decisions' scores is_anomaly as given. Caught: an is_anomaly episode starts in the anomaly's "
            "NAB window (univariate) or between a fault's onset and end (multivariate).\n\n" + text,
        )
    return report


if __name__ == "__main__":
    main()
