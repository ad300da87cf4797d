"""SKAB outlier- and changepoint-detection benchmark (``make bench-skab``), through the replay operators.

Protocol (../shared/data/README.md): in each of the 34 labelled files the first 400 rows are
warm-up (learned, not scored); every later row is scored point-wise; confusion counts are summed
over all files. F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP).
One pass, online: each file is a fresh twin fed through ``operators.ml.replay`` (the code behind
``twinflow replay``); the label columns are excluded from the sensors.

Changepoint problem (same run): the detected changepoints are the first flagged row of each
anomaly episode (a 0 → 1 step of ``is_anomaly``); they are scored against the ``changepoint``
labels with the NAB score of SKAB's leaderboard (:mod:`benchmarks.nab`: 30 s windows centred on
each changepoint; standard, low-FP and low-FN profiles). Also shown: every change of the flag
(0 → 1 and 1 → 0) as a changepoint, and 60 s windows.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from benchmarks import nab
from benchmarks.data import append_results, data_dir, require
from connectors.csv_history import read_table
from operators.ml.config import AnomalyConfig, ModelConfig
from operators.ml.replay import replay

WARMUP_ROWS = 400
PUBLISHED = [
    ("Conv-AE (offline)", 0.78, 13.55, 28.02),
    ("MSET (offline)", 0.78, 39.73, 14.13),
    ("T-squared+Q (PCA, offline)", 0.76, 26.62, 24.92),
    ("T-squared (offline)", 0.66, 19.21, 42.6),
    ("Isolation forest (offline)", 0.29, 2.56, 82.89),
]
# SKAB README leaderboard, changepoint problem, NAB (standard, low FP, low FN), 30 s windows.
PUBLISHED_CP = [
    ("Isolation forest", 37.53, 17.09, 45.02),
    ("MSCRED", 28.74, 23.43, 31.21),
    ("Vanilla LSTM", 27.09, 11.06, 32.68),
    ("T-squared+Q (PCA-based)", 26.71, 22.42, 28.32),
    ("ruptures (BinSeg, Mahalanobis; knows the CP count)", 24.1, 21.69, 25.04),
    ("LSTM-AE", 22.12, 20.01, 23.21),
    ("T-squared", 17.87, 3.44, 23.2),
    ("MSET", 12.71, 11.04, 13.6),
    ("Conv-AE", 10.09, 8.62, 10.83),
    ("Null detector", 0.0, 0.0, 0.0),
]
CP_WIDTH_S = 30.0


def detected_changepoints(times: list[float], flags: list[int], ends_too: bool = False) -> list[float]:
    """Times where the flag steps 0 → 1 (the first point of each episode); with ``ends_too`` also 1 → 0."""
    return [
        t
        for i, (t, f) in enumerate(zip(times, flags, strict=True))
        if (f and not (i and flags[i - 1])) or (ends_too and i and not f and flags[i - 1])
    ]


def changepoint_scores(
    true_cps: list[list[float]], detected: list[list[float]], width: float
) -> tuple[nab.Counts, dict[str, float]]:
    """Counts and the three NAB profile scores over all files."""
    counts = nab.count([nab.windows(cps, width) for cps in true_cps], detected)
    return counts, {name: nab.score(counts, prof) for name, prof in nab.PROFILES.items()}


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
    true_cps: list[list[float]] = []
    cp_starts: list[list[float]] = []
    cp_changes: list[list[float]] = []
    t0 = time.perf_counter()
    for path in files:
        table = read_table(path, "datetime", None, ["anomaly", "changepoint"])
        labels = table.frame["anomaly"].cast(int).to_list()
        flags = [row["is_anomaly"] for row in replay([table], "datetime", ModelConfig(anomaly=cfg))]
        rows += len(flags)
        times = (table.frame["datetime"].str.to_datetime().dt.epoch("ms") / 1000.0).to_list()
        cps = table.frame["changepoint"].cast(int).to_list()
        true_cps.append([t for t, c in zip(times, cps, strict=True) if c])
        cp_starts.append(detected_changepoints(times, flags))
        cp_changes.append(detected_changepoints(times, flags, ends_too=True))
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
    cp_rows = []
    for label, det in (("episode starts", cp_starts), ("every flag change", cp_changes)):
        for width in (CP_WIDTH_S, 2 * CP_WIDTH_S):
            counts, scores = changepoint_scores(true_cps, det, width)
            cp_rows.append((label, width, counts, scores))
            print(
                f"changepoints ({label}, {width:.0f} s windows): NAB standard {scores['standard']:.2f}, "
                f"low FP {scores['low_fp']:.2f}, low FN {scores['low_fn']:.2f}; {counts.hits}/{counts.changepoints} "
                f"changepoints hit, {counts.false_alarms} false detections"
            )
    res.update({f"nab_{k}": v for k, v in cp_rows[0][3].items()})
    print("published (30 s): " + "; ".join(f"{n} {a}/{b}/{c}" for n, a, b, c in PUBLISHED_CP))
    if not args.no_write:
        table_md = "| model | F1 | FAR % | MAR % |\n|---|---|---|---|\n"
        ours = "twinflow twin model: novelty + condition + sensor health (online, one pass)"
        table_md += f"| **{ours}** | **{f1:.3f}** | **{far:.2f}** | **{mar:.2f}** |\n"
        table_md += "".join(f"| {n} | {a} | {b} | {c} |\n" for n, a, b, c in PUBLISHED)
        changed = ", ".join(args.set) or "defaults"
        table_md += (
            "\nChangepoint problem: NAB score (SKAB's leaderboard protocol, windows centred on each labelled "
            f"changepoint, {sum(map(len, true_cps))} changepoints in 34 files; first flagged row of an episode = "
            "detected changepoint).\n\n| model | NAB standard | NAB low FP | NAB low FN | window | hits | false |\n"
            "|---|---|---|---|---|---|---|\n"
        )
        for label, width, counts, sc in cp_rows:
            bold = "**" if (label, width) == ("episode starts", CP_WIDTH_S) else ""
            table_md += (
                f"| {bold}twinflow ({label}){bold} | {bold}{sc['standard']:.2f}{bold} | {sc['low_fp']:.2f} | "
                f"{sc['low_fn']:.2f} | {width:.0f} s | {counts.hits}/{counts.changepoints} | {counts.false_alarms} |\n"
            )
        table_md += "".join(f"| {n} | {a} | {b} | {c} | 30 s | | |\n" for n, a, b, c in PUBLISHED_CP)
        append_results(
            "SKAB outlier and changepoint detection",
            "make bench-skab  (.venv/bin/python -m benchmarks.skab" + "".join(f" --set {s}" for s in args.set) + ")",
            f"Config: {changed}. Counts: TP {tp}, FP {fp}, FN {fn}, TN {tn}. Files with the anomaly "
            f"detected: {files_hit}; median delay onset → first alarm {median_delay} s.\n\n" + table_md,
        )
    return res


if __name__ == "__main__":
    main()
