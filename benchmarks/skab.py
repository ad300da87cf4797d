"""SKAB outlier-detection benchmark (``make bench-skab``), through the replay operators.

Protocol (../shared/data/README.md): in each of the 34 labelled files the first 400 rows are
warm-up (learned, not scored); every later row is scored point-wise; confusion counts are summed
over all files. F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP).
One pass, online: each file is a fresh twin fed through ``operators.replay`` (the code behind
``twinflow replay``); the label columns are excluded from the sensors.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from benchmarks.data import append_results, data_dir, require
from operators.ml_config import AnomalyConfig, ModelConfig
from operators.replay import read_table, replay

WARMUP_ROWS = 400
PUBLISHED = [
    ("Conv-AE (offline)", 0.78, 13.55, 28.02),
    ("MSET (offline)", 0.78, 39.73, 14.13),
    ("T-squared+Q (PCA, offline)", 0.76, 26.62, 24.92),
    ("T-squared (offline)", 0.66, 19.21, 42.6),
    ("Isolation forest (offline)", 0.29, 2.56, 82.89),
]


def _parse_overrides(pairs: list[str]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = float(value) if "." in value or "e" in value else int(value)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override AnomalyConfig")
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    root = require(data_dir() / "skab")
    files = sorted(p for p in root.glob("*/*.csv") if p.parent.name != "anomaly-free")
    if len(files) != 34:
        raise SystemExit(f"{root}: expected 34 labelled SKAB files, found {len(files)}")
    cfg = replace(AnomalyConfig(), **_parse_overrides(args.set))
    tp = fp = fn = tn = 0
    delays: list[int] = []
    missed = 0
    rows = 0
    t0 = time.perf_counter()
    for path in files:
        table = read_table(path, "datetime", None, ["anomaly", "changepoint"])
        labels = table.frame["anomaly"].cast(int).to_list()
        flags = [row["is_anomaly"] for row in replay([table], "datetime", ModelConfig(anomaly=cfg))]
        rows += len(flags)
        for y, p in zip(labels[WARMUP_ROWS:], flags[WARMUP_ROWS:], strict=True):
            tp += y & p
            fp += (1 - y) & p
            fn += y & (1 - p)
            tn += (1 - y) & (1 - p)
        onset = next((i for i in range(WARMUP_ROWS, len(labels)) if labels[i]), None)
        if onset is not None:
            hit = next((i for i in range(onset, len(labels)) if flags[i] and labels[i]), None)
            if hit is None:
                missed += 1
            else:
                delays.append(hit - onset)
    elapsed = time.perf_counter() - t0
    f1 = tp / (tp + (fp + fn) / 2)
    far = 100 * fp / (fp + tn)
    mar = 100 * fn / (fn + tp)
    delays.sort()
    median_delay = delays[len(delays) // 2] if delays else float("nan")
    res = {"f1": f1, "far": far, "mar": mar, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    print(f"SKAB, 34 files, online one pass: F1 {f1:.3f}  FAR {far:.2f} %  MAR {mar:.2f} %")
    files_hit = f"{len(delays)}/{len(delays) + missed}"
    print(f"  TP {tp}  FP {fp}  FN {fn}  TN {tn}; anomalies detected in {files_hit} files,")
    print(f"  median delay from onset to first alarm {median_delay} s; {rows / elapsed:,.0f} rows/s")
    print("published: " + "; ".join(f"{n} F1 {a} FAR {b} MAR {c}" for n, a, b, c in PUBLISHED))
    if not args.no_write:
        table_md = "| model | F1 | FAR % | MAR % |\n|---|---|---|---|\n"
        ours = "twinflow AnomalyDetector (online, one pass)"
        table_md += f"| **{ours}** | **{f1:.3f}** | **{far:.2f}** | **{mar:.2f}** |\n"
        table_md += "".join(f"| {n} | {a} | {b} | {c} |\n" for n, a, b, c in PUBLISHED)
        changed = ", ".join(args.set) or "defaults"
        append_results(
            "SKAB outlier detection",
            "make bench-skab  (.venv/bin/python -m benchmarks.skab" + "".join(f" --set {s}" for s in args.set) + ")",
            f"Config: {changed}. Counts: TP {tp}, FP {fp}, FN {fn}, TN {tn}. Files with the anomaly "
            f"detected: {files_hit}; median delay onset → first alarm {median_delay} s.\n\n" + table_md,
        )
    return res


if __name__ == "__main__":
    main()
