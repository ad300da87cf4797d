"""The ``twinflow`` command as a user runs it, for benchmarks and tests: a fresh interpreter on a code
tree (this checkout, or a ``git archive`` of another commit), with none of the caller's TWINFLOW_*
variables but those given; and a plant's history written as a CSV file and replayed through
``twinflow replay`` (the documented entry point of backtests), its scores read back.

Tests import it too (a benchmark never imports tests).

>>> rng = np.random.default_rng(7)
>>> cols = temp_and_pressure(rng, np.zeros(3))
>>> list(cols), cols["temp_c"].shape
(['temp_c', 'pressure_bar'], (3,))
>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "plant.csv"
>>> write_csv_1hz(path, cols)
>>> path.read_text().splitlines()[2].split(",")[0]
'2026-01-01T00:00:01Z'
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the first row's time


class ReplayFailed(RuntimeError):
    """``twinflow replay`` exited with an error (the message ends with its standard error)."""


def twinflow(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    *,
    tree: Path = REPO,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``python -m twinflow.cli.main *args`` in ``cwd``, importing ``tree``'s code, with the caller's
    environment less its TWINFLOW_* variables, plus ``env``; output captured as text."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWINFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(tree), **(env or {})},
        timeout=timeout,
    )


def replay_csv(
    src: Path,
    out: Path,
    twin: str,
    env: Mapping[str, str] | None = None,
    *,
    tree: Path = REPO,
    timeout: float = 600,
) -> pl.DataFrame:
    """``twinflow replay src --time-col ts --twin <twin> --out out``, run in ``src``'s folder as
    :func:`twinflow` runs it; the scores read back. Raises :class:`ReplayFailed` when it fails."""
    args = ["replay", str(src), "--time-col", "ts", "--twin", twin, "--out", str(out)]
    res = twinflow(args, src.parent, env, tree=tree, timeout=timeout)
    if res.returncode != 0:
        raise ReplayFailed(f"twinflow replay failed ({tree}):\n{res.stderr[-3000:]}")
    return pl.read_csv(out, infer_schema_length=None)


def write_csv_1hz(path: Path, columns: Mapping[str, np.ndarray], start: datetime = T0) -> None:
    """``columns`` as a CSV file after a first column ``ts``: one row a second from ``start`` (ISO 8601, UTC)."""
    df = pl.DataFrame(dict(columns))
    ts = [(start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(df.height)]
    df.insert_column(0, pl.Series("ts", ts)).write_csv(path)


def temp_and_pressure(rng: np.random.Generator, load: np.ndarray) -> dict[str, np.ndarray]:
    """A temperature (``temp_c``, about 60) and a pressure (``pressure_bar``, about 5) wandering together
    with ``load``, each with its own noise (drawn in that order from ``rng``)."""
    n = len(load)
    temp = 60 + 0.5 * load + rng.normal(0, 0.2, n)
    return {"temp_c": temp, "pressure_bar": 5 + 0.05 * load + rng.normal(0, 0.02, n)}
