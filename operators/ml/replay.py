"""Replay history through the live per-twin step (``twinflow replay``): the user's backtest.

Pure logic on tables already read (:mod:`connectors.csv_history` reads the CSV files).

Each file — and each id within a file — is its own twin with fresh models. Rows are fed one by one
in time order (stable sort) through :func:`operators.ml.live_step.step`, the code the models flow
runs, and each output row is made of the records that step published for the row (the same
:class:`~operators.records.alerts.AnomalyScore` the alerts flow consumes), so an output depends only
on its own and earlier rows and is what the live flow would have published. Numeric columns are
sensors unless they are the time/id column or excluded; true/false columns are booleans, which the
models take as context (the operating point), as live. ``fit`` files are run-to-failure histories:
each id's rows and then a ``failure`` event go through the same step, and the labelled history it
emits teaches the live fleet step before the evaluation files are scored (without labels).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from operators.ml.config import ModelConfig
from operators.ml.failure import FleetFailureModel
from operators.ml.fleet_step import FleetItem
from operators.ml.live_state import LiveModelConfig
from operators.ml.live_step import Event, Item, Reading, fleet_step, step, step_many
from operators.ml.sensor_limits import SensorLimit
from operators.ml.twin_model import time_value
from operators.records.alerts import AnomalyScore
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN

OUTPUT_COLUMNS = ["file", "id", "time", "anomaly_score", "is_anomaly", "health", "kind", "sensors"]
FAILURE_COLUMNS = ["rul", "failure_probability"]


class ReplayError(ValueError):
    """A user mistake in the replay inputs; the message names the file, column and fix."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # the file it came from, as shown in errors and in the output's ``file`` column
    frame: pl.DataFrame  # sorted by (id, time); columns __id, __t (float), time col, sensors
    sensors: list[str]
    notes: tuple[str, ...] = ()  # how the file was read (time format, cells that were not numbers), for the user
    cycles: bool = False  # the time column counts cycles (of ``time_unit_s`` seconds), not timestamps


# Unix time in s, ms, µs or ns: values from 2001-09-09 (1e9 s) to 2103 (4.2e9 s) in that unit.
EPOCH_UNITS = {"epoch_s": 1.0, "epoch_ms": 1e3, "epoch_us": 1e6, "epoch_ns": 1e9}
TIME_FORMATS = ("auto", "cycles", *EPOCH_UNITS)
DAY_FIRST = r"^\s*\d{1,2}/\d{1,2}/\d{2,4}"  # 02/01/2026: read day first


def time_values(name: str, t: pl.Series, time_format: str = "auto") -> tuple[pl.Series, bool, list[str]]:
    """A time column as seconds (float; cycles for a column of counts), whether it counts cycles, and
    notes on how it was read. ``time_format``: ``auto`` (text is a timestamp, day first where written
    with slashes; numbers are Unix time when all of them are in its range in s, ms, µs or ns, else
    cycles), ``cycles``, ``epoch_s|ms|us|ns``, or a ``strftime`` format such as ``%m/%d/%Y %I:%M %p``.
    Timestamps without a zone are UTC.

    >>> secs, cycles, notes = time_values("f.csv", pl.Series("ts", [1767225600000, 1767225601000]))
    >>> secs.to_list(), cycles
    ([1767225600.0, 1767225601.0], False)
    >>> notes[0].split(";")[0]
    "f.csv: time column 'ts' read as Unix time in ms (2026-01-01T00:00:00+00:00 …)"
    >>> secs, cycles, notes = time_values("f.csv", pl.Series("cycle", [1, 2, 3]))
    >>> secs.to_list(), cycles, notes
    ([1.0, 2.0, 3.0], True, [])
    """
    col = t.name
    if time_format not in TIME_FORMATS and "%" not in time_format:
        raise ReplayError(f"--time-format {time_format!r}: use one of {', '.join(TIME_FORMATS)} or a strftime format")
    if t.dtype.is_numeric() and "%" not in time_format:
        values = t.cast(pl.Float64)
        unit = time_format if time_format in EPOCH_UNITS else None
        if time_format == "auto" and values.len() and values.is_not_null().all():
            unit = next(
                (u for u, k in EPOCH_UNITS.items() if 1e9 * k <= values.min() and values.max() <= 4.2e9 * k), None
            )  # type: ignore[operator]
            if unit is not None:
                first = datetime.fromtimestamp(values[0] / EPOCH_UNITS[unit], UTC).isoformat()
                shown = unit.removeprefix("epoch_").replace("us", "µs")
                note = f"{name}: time column {col!r} read as Unix time in {shown} ({first} …)"
                note += "; if it counts cycles, pass --time-format cycles"
                return values / EPOCH_UNITS[unit], False, [note]
        if unit is None:
            return values, True, []
        return values / EPOCH_UNITS[unit], False, []
    if time_format == "cycles" or time_format in EPOCH_UNITS:
        raise ReplayError(
            f"{name}: time column {col!r} holds text, not numbers; --time-format {time_format} needs numbers"
        )
    text = t.cast(pl.String)
    fmt = time_format if "%" in time_format else None
    parsed = text.str.to_datetime(format=fmt, strict=False, time_zone="UTC")
    bad = parsed.is_null() & t.is_not_null()
    if bad.any():
        example = t.filter(bad)[0]
        if fmt is not None:
            raise ReplayError(
                f"{name}: time column {col!r} holds {example!r}, which --time-format {fmt!r} does not read"
            )
        raise ReplayError(
            f"{name}: time column {col!r} holds {example!r}, which is neither a number nor a "
            "timestamp (e.g. 2026-01-01 08:00:00 or 2026-01-01T08:00:00Z); pick another --time-col, or "
            "give its format with --time-format (e.g. '%m/%d/%Y %I:%M:%S %p')"
        )
    notes = []
    if fmt is None and text.str.contains(DAY_FIRST).any():
        example = text.filter(text.str.contains(DAY_FIRST))[0]
        notes.append(
            f"{name}: time column {col!r} read day first ({example!r} is {parsed.filter(text == example)[0]:%Y-%m-%d});"
            " for month first pass --time-format '%m/%d/%Y %H:%M:%S'"
        )
    return parsed.dt.epoch("us").cast(pl.Float64) / 1e6, False, notes


def numbers_among_text(name: str, df: pl.DataFrame, skip: set[str | None]) -> tuple[pl.DataFrame, list[str]]:
    """Text columns whose values are mostly numbers are sensors: a historian's export marks a missing
    value with text (``#N/A``, ``Bad``, ``---``), which makes the whole column text. Such a column
    becomes numbers, its other cells missing (the twin holds the sensor's last value, as live), and a
    note says so; a column of mostly text (a status, a batch code) stays text and is not a sensor.

    >>> df = pl.DataFrame({"p": ["1.5", "#N/A", "2.5", "3"], "state": ["run", "run", "stop", "1"]})
    >>> out, notes = numbers_among_text("f.csv", df, set())
    >>> out["p"].to_list(), out["state"].dtype, notes
    ([1.5, None, 2.5, 3.0], String, ["f.csv: column 'p': 1 of 4 values are not numbers (e.g. '#N/A'); read as missing"])
    """
    notes, columns = [], []
    for col in df.columns:
        if col in skip or df[col].dtype != pl.String:
            continue
        text = df[col].str.strip_chars()
        values = text.cast(pl.Float64, strict=False)
        given = int(text.is_not_null().sum() - (text == "").sum())
        numbers = int(values.is_not_null().sum())
        if not numbers or numbers * 2 <= given:
            continue
        columns.append(values.alias(col))
        odd = text.filter(values.is_null() & text.is_not_null() & (text != ""))
        if odd.len():
            what = f"{odd.len()} of {given} values are not numbers (e.g. {odd[0]!r})"
            notes.append(f"{name}: column {col!r}: {what}; read as missing")
    return (df.with_columns(columns) if columns else df), notes


def table_of(
    name: str,
    df: pl.DataFrame,
    time_col: str,
    id_col: str | None,
    exclude: Sequence[str],
    time_format: str = "auto",
    twin: str = "",
) -> Table:
    """Check the named columns of one file's rows ``df`` and order them per id by time
    (``time_format``: :func:`time_values`). ``twin``: the twin_id of a file without ``id_col``, its
    output ``id`` and what the per-twin rules (``[[ml.ranges]]`` globs, fleets) are matched against,
    as live."""
    if twin and id_col:
        raise ReplayError(f"{name}: --twin names the twin of a file without --id-col; give one of them")
    for opt, col in (("--time-col", time_col), ("--id-col", id_col), *(("--exclude", c) for c in exclude)):
        if col is not None and col not in df.columns:
            raise ReplayError(f"{name}: {opt} {col!r} is not a column; columns are {', '.join(df.columns)}")
    tnum, cycles, notes = time_values(name, df[time_col], time_format)
    if tnum.is_null().any():
        raise ReplayError(f"{name}: time column {time_col!r} has empty values; fill or drop those rows")
    skip = {time_col, id_col, *exclude}
    df, text_notes = numbers_among_text(name, df, skip)
    sensors = [c for c in df.columns if c not in skip and df[c].dtype.is_numeric()]
    if not sensors:
        raise ReplayError(f"{name}: no numeric sensor columns left after excluding {sorted(c for c in skip if c)}")
    # true/false columns (running, valve open) go to the models as booleans, as live: operating-point context
    sensors = [c for c in df.columns if c in sensors or (c not in skip and df[c].dtype == pl.Boolean)]
    ids = df[id_col].cast(pl.String) if id_col else pl.Series([twin] * df.height, dtype=pl.String)
    notes = [*notes, *_unsendable(name, sensors, ids)]
    frame = (
        df.with_columns(ids.alias("__id"), tnum.alias("__t"), pl.int_range(df.height).alias("__row"))
        .with_columns(pl.col("__id").fill_null(""))
        .sort(["__id", "__t", "__row"], maintain_order=True)
    )
    # ids in order of first appearance, rows of each id in time order
    first = frame.group_by("__id").agg(pl.col("__row").min().alias("__first"))
    frame = frame.join(first, on="__id").sort(["__first", "__t", "__row"]).drop("__first")
    return Table(name, frame, sensors, (*notes, *text_notes), cycles)


def _unsendable(name: str, sensors: list[str], ids: pl.Series) -> list[str]:
    """Notes on sensor names and twin ids no telemetry envelope can carry: the live flow refuses
    those values (README, "Telemetry envelope"), so it would not score them as replay does."""
    notes = [
        f"{name}: column {s!r} is no sensor name a live twin can send (letters, digits, _ . -, up to 64):"
        " the live flow refuses its values; name it as your bridge's mapping does"
        for s in sensors
        if not re.match(SENSOR_PATTERN, s)
    ]
    bad = [i for i in ids.unique(maintain_order=True).drop_nulls().to_list() if i and not re.match(TWIN_ID_PATTERN, i)]
    if bad:
        notes.append(f"{name}: id {bad[0]!r} is no twin_id the live flow accepts (letters, digits, . _ : -)")
    return notes


def _twins(table: Table) -> Iterator[tuple[str, pl.DataFrame]]:
    for key, group in table.frame.group_by("__id", maintain_order=True):
        yield str(key[0]), group


def _readings(group: pl.DataFrame, sensors: list[str]) -> Iterator[dict[str, float]]:
    for row in group.select(sensors).iter_rows(named=True):
        yield {k: v if v.__class__ is bool else float(v) for k, v in row.items() if v is not None}


def _items(group: pl.DataFrame, time_col: str, table: Table) -> Iterator[tuple[Any, Reading]]:
    """The live step's items of one twin's rows: (the row's time as shown, Reading). Timestamps
    become datetimes, cycles stay numbers (of ``time_unit_s`` seconds)."""
    times = group["__t"].to_list()
    shown = group[time_col].to_list()
    for t, label, readings in zip(times, shown, _readings(group, table.sensors), strict=True):
        yield label, Reading(t if table.cycles else datetime.fromtimestamp(t, UTC), readings)


def _live_config(cfg: ModelConfig, ranges: tuple[SensorLimit, ...], predict: bool) -> LiveModelConfig:
    """The models flow's configuration for a backtest: no forecasts; failure features with every
    sample (``predict``) so each row gets its prediction."""
    return LiveModelConfig(cfg, forecast_every=0, predict_every=1 if predict else 0, ranges=ranges)


def fit_fleet(
    tables: Sequence[Table], time_col: str, cfg: ModelConfig, ranges: tuple[SensorLimit, ...] = ()
) -> FleetFailureModel:
    """Learn the fleet failure model from run-to-failure histories (last row of each id = failure):
    each id's rows go through the live step, then a ``failure`` event, as in the models flow; the
    labelled history it emits is learned by the live fleet step."""
    if cfg.failure is None:
        raise ReplayError("--fit needs a failure model: add --model rul (or set ml.model = 'rul')")
    live = _live_config(cfg, ranges, predict=False)
    fleet = FleetFailureModel(cfg.failure)
    for table in tables:
        for twin_id, group in _twins(table):
            readings = [reading for _, reading in _items(group, time_col, table)]
            samples = [r for r in readings if r.readings]  # a row without any value is no sample
            items: list[Item] = [*samples, Event("failure", readings[-1].ts)]
            _, records = step_many(None, items, live, twin_id)
            for rec in records:
                if isinstance(rec, FleetItem) and rec.labelled is not None:
                    fleet, _ = fleet_step(fleet, rec, live)
    return fleet


def explained(score: AnomalyScore, top: int = 3) -> str:
    """The sensors behind a row, ``;``-separated: faulty sensors (``name=fault``), else the top
    contributions of an anomaly, else the sensors that lower the health (empty when none)."""
    if score.sensor_faults:
        return ";".join(f"{s}={f}" for s, f in sorted(score.sensor_faults.items()))
    if score.is_anomaly and score.contributions:
        ranked = sorted(score.contributions.items(), key=lambda kv: -kv[1])[:top]
        return ";".join(s for s, share in ranked if share > 0)
    return ";".join(list(score.drivers)[:top])


def replay(
    tables: Sequence[Table],
    time_col: str,
    cfg: ModelConfig,
    fleet: FleetFailureModel | None = None,
    ranges: tuple[SensorLimit, ...] = (),
) -> Iterator[dict[str, Any]]:
    """One output row per input row, twin by twin, in time order: the records the live step
    (:func:`operators.ml.live_step.step`) publishes for the row, and the live fleet step's answer
    to its failure features. A row the live flow publishes no score for (warm-up, a setpoint
    change settling, a row without any value, which is not stepped) has empty score, health, kind
    and sensors. Numbers are the published floats,
    unrounded (the CSV writes each so that it reads back bit for bit)."""
    with_failure = cfg.failure is not None
    live = _live_config(cfg, ranges, predict=with_failure)
    for table in tables:
        for twin_id, group in _twins(table):
            state = None
            for label, reading in _items(group, time_col, table):
                records: list[Any] = []
                if reading.readings:  # a row without any value is no sample: a device sends nothing for it
                    state, records = step(state, reading, live, twin_id)
                row: dict[str, Any] = {
                    "file": table.name,
                    "id": twin_id,
                    "time": str(label),
                    "anomaly_score": None,
                    "is_anomaly": 0,
                    "health": None,
                    "kind": "",
                    "sensors": "",
                }
                rul = prob = None
                for rec in records:
                    if isinstance(rec, AnomalyScore):
                        row["anomaly_score"] = rec.score
                        row["is_anomaly"] = int(rec.is_anomaly)
                        row["health"] = rec.health
                        row["kind"] = rec.kind
                        row["sensors"] = explained(rec)
                    elif isinstance(rec, FleetItem) and rec.features is not None and fleet is not None:
                        _, predictions = fleet_step(fleet, rec, live)
                        for p in predictions:
                            rul = p.rul_s / cfg.time_unit_s
                            prob = p.failure_probability
                if with_failure:
                    row["rul"], row["failure_probability"] = rul, prob
                yield row


def replay_tables(
    tables: Sequence[Table],
    time_col: str,
    cfg: ModelConfig,
    fit: Sequence[Table] = (),
    ranges: tuple[SensorLimit, ...] = (),
) -> pl.DataFrame:
    """Optionally fit the fleet on ``fit``, replay ``tables``, and return the output table."""
    fleet = None
    if fit:
        fleet = fit_fleet(fit, time_col, cfg, ranges)
    elif cfg.failure is not None:
        fleet = FleetFailureModel(cfg.failure)  # untrained: rul stays empty until failures are seen
    columns = OUTPUT_COLUMNS + (FAILURE_COLUMNS if cfg.failure is not None else [])
    rows = list(replay(tables, time_col, cfg, fleet, ranges))
    if not rows:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    return pl.DataFrame(rows, infer_schema_length=None).select(columns)


__all__ = ["OUTPUT_COLUMNS", "ReplayError", "replay", "replay_tables", "table_of", "time_value"]
