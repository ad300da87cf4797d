"""History CSV files for ``twinflow replay``: read each file, then replay the tables
(:mod:`operators.ml.replay`, pure logic) and return the output table.

The separator is ``;`` or ``,``, whichever splits the header line into more fields; a ``;`` file
with decimal commas (``1,5``: a European spreadsheet's export) is read with them when that gives
more numeric columns. A file that cannot be read names itself in the
:class:`~operators.ml.replay.ReplayError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from operators.ml.config import ModelConfig
from operators.ml.replay import ReplayError, Table, replay_tables, table_of
from operators.ml.sensor_limits import SensorLimit


def sniff_separator(path: Path) -> str:
    """``;`` or ``,`` whichever splits the header line into more fields."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read ({exc.strerror})") from None
    return ";" if header.count(";") > header.count(",") else ","


def read_table(
    path: Path, time_col: str, id_col: str | None, exclude: Sequence[str], time_format: str = "auto", twin: str = ""
) -> Table:
    """Read one CSV, check the named columns, and order it per id by time (``time_format``:
    :func:`operators.ml.replay.time_values`; ``twin``: the twin_id of a file without ``id_col``)."""
    separator = sniff_separator(path)
    try:
        df = pl.read_csv(path, separator=separator, infer_schema_length=10_000)
        if separator == ";" and pl.String in df.dtypes:
            commas = pl.read_csv(path, separator=separator, infer_schema_length=10_000, decimal_comma=True)
            if _numeric(commas) > _numeric(df):
                df = commas
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReplayError(f"{path}: not a readable CSV ({exc})") from None
    return table_of(str(path), df, time_col, id_col, exclude, time_format, twin)


def _numeric(df: pl.DataFrame) -> int:
    return sum(dtype.is_numeric() for dtype in df.dtypes)


def replay_files(
    files: Sequence[Path],
    time_col: str,
    id_col: str | None,
    exclude: Sequence[str],
    cfg: ModelConfig,
    fit: Sequence[Path] = (),
    ranges: tuple[SensorLimit, ...] = (),
    note: Callable[[str], None] | None = None,
    time_format: str = "auto",
    twin: str = "",
) -> pl.DataFrame:
    """Read, optionally fit the fleet on the ``fit`` files, replay ``files``, and return the output table.
    ``note`` is told how the files were read (the time format, cells that were not numbers); ``twin``
    is the twin_id of files without ``id_col`` (whose rules apply, as live)."""
    fit_tables = [read_table(p, time_col, id_col, exclude, time_format, twin) for p in fit]
    tables = [read_table(p, time_col, id_col, exclude, time_format, twin) for p in files]
    for table in (*fit_tables, *tables):
        for text in table.notes if note is not None else ():
            note(text)
    return replay_tables(tables, time_col, cfg, fit=fit_tables, ranges=ranges)
