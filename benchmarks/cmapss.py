"""C-MAPSS FD001 remaining-useful-life benchmark (``make bench-cmapss``).

Protocol: engines split 5-fold by unit (seeded). For each fold, a fresh fleet model learns online
from the training engines' run-to-failure histories, one failure at a time (as ``twin.events``
would deliver them); each held-out engine is truncated at a random cycle (seeded, at least 31
cycles as in NASA's test set) and its RUL predicted at the last observed cycle. RUL capped at 125.
Reports RMSE and NASA's score over all held-out engines.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import polars as pl

from benchmarks.data import append_results, data_dir, require
from operators.ml.failure import FailureConfig, FleetFailureModel, TwinHistory

PUBLISHED = "SVR 20.96 · CNN 18.45 · deep LSTM 16.14 · AGCNN 12.42 · MTSTAN 10.97 (official test set, offline)"


def nasa_score(d: np.ndarray) -> float:
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0) - 1.0, np.exp(d / 10.0) - 1.0)))


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override FailureConfig")
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)

    path = require(data_dir() / "cmapss" / "train_FD001.csv")
    df = pl.read_csv(path)
    sensors = [c for c in df.columns if c not in ("unit", "cycle")]
    units: dict[int, pl.DataFrame] = {
        int(key[0]): g.sort("cycle") for key, g in df.group_by("unit", maintain_order=True)
    }
    cfg = FailureConfig(**{k: float(v) if "." in v else int(v) for k, v in (a.split("=", 1) for a in args.set)})
    ids = np.array(sorted(units))
    np.random.default_rng(args.seed).shuffle(ids)
    errors: list[float] = []
    t0 = time.perf_counter()
    learned = 0
    histories: dict[int, list[tuple[dict[str, float], float]]] = {}  # a unit's labelled history is fold-independent
    for u, g in units.items():
        hist = TwinHistory(cfg)
        for cycle, row in zip(g["cycle"].to_list(), g.select(sensors).iter_rows(named=True), strict=True):
            hist.observe(cycle, row)
        histories[u] = hist.on_failure(g["cycle"][-1])
    for k, test in enumerate(np.array_split(ids, args.folds)):
        fleet = FleetFailureModel(cfg)
        for u in ids:
            if u in test:
                continue
            labelled = histories[int(u)]
            learned += len(labelled)
            fleet.learn_history(labelled)
        rng = np.random.default_rng(1000 + args.seed + k)
        for u in test:
            g = units[int(u)]
            n = g.height
            cut = int(rng.integers(min(31, n - 1), n))  # observed cycles
            hist = TwinHistory(cfg)
            feats: dict[str, float] = {}
            for cycle, row in zip(
                g["cycle"][:cut].to_list(), g[:cut].select(sensors).iter_rows(named=True), strict=True
            ):
                feats = hist.observe(cycle, row, keep=False)
            true = min(cfg.rul_cap, float(g["cycle"][-1] - g["cycle"][cut - 1]))
            errors.append(fleet.predict(feats).rul - true)
    elapsed = time.perf_counter() - t0
    d = np.array(errors)
    rmse = math.sqrt(float(np.mean(d**2)))
    res = {"rmse": rmse, "nasa_score": nasa_score(d), "engines": len(d), "seconds": elapsed}
    print(
        f"C-MAPSS FD001, {args.folds}-fold by unit, {len(d)} held-out engines: "
        f"RMSE {rmse:.2f}, NASA score {res['nasa_score']:.0f} "
        f"(learned {learned} labelled samples online in {elapsed:.0f} s)"
    )
    print(f"published: {PUBLISHED}")
    if not args.no_write:
        append_results(
            "C-MAPSS FD001 RUL (online, fleet-learned)",
            "make bench-cmapss  (.venv/bin/python -m benchmarks.cmapss)",
            f"| model | RMSE | NASA score | protocol |\n|---|---|---|---|\n"
            f"| twinflow FleetFailureModel (random-feature kernel ridge, "
            f"{cfg.ensemble}×{cfg.random_features} features, reservoir {cfg.buffer_size}) "
            f"| {rmse:.2f} | "
            f"{res['nasa_score']:.0f} | {args.folds}-fold by unit, {len(d)} engines truncated at random "
            f"cycles (seed {args.seed}), RUL cap {cfg.rul_cap:.0f} |\n"
            f"| published (offline) | {PUBLISHED} | | official test set |\n",
        )
    return res


if __name__ == "__main__":
    main()
