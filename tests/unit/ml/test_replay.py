import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from connectors.csv_history import replay_files
from operators.ml.config import AnomalyConfig, FailureConfig, ModelConfig
from operators.ml.replay import OUTPUT_COLUMNS, ReplayError
from tests.unit.ml.synth import correlated_stream
from twinflow.cli.main import app

CFG = ModelConfig(anomaly=AnomalyConfig(warmup=100, window=5))


def write_two_twins(path: Path, n: int = 300, sep: str = ";") -> pl.DataFrame:
    """Two machines interleaved in one file, timestamps, a label column to exclude."""
    frames = []
    for k, machine in enumerate(["m-a", "m-b"]):
        data = correlated_stream(n, d=3, seed=k)
        ts = pl.datetime_range(
            pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 1) + pl.duration(seconds=n - 1), "1s", eager=True
        )
        frame = pl.DataFrame({"ts": ts.dt.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine})
        frame = frame.with_columns(
            *(pl.Series(f"s{i}", data[:, i]) for i in range(3)), pl.Series("label", np.zeros(n, dtype=int))
        )
        frames.append(frame)
    df = pl.concat(frames).sort("ts", maintain_order=True)
    df.write_csv(path, separator=sep)
    return df


def test_output_contract(tmp_path: Path):
    src = tmp_path / "plant.csv"
    df = write_two_twins(src)
    out = replay_files([src], "ts", "machine", ["label"], CFG)
    assert out.columns == OUTPUT_COLUMNS
    assert out.height == df.height
    assert set(out["id"].unique()) == {"m-a", "m-b"}
    assert set(out["is_anomaly"].unique()) <= {0, 1}
    for _, g in out.group_by("id"):
        assert g["time"].to_list() == sorted(g["time"].to_list())  # time order per twin
        assert g["anomaly_score"][: CFG.anomaly.warmup].null_count() == CFG.anomaly.warmup
        assert g["anomaly_score"][CFG.anomaly.warmup :].null_count() == 0
    assert (out["file"] == str(src)).all()


def test_excluded_and_non_numeric_columns_are_not_sensors(tmp_path: Path):
    src = tmp_path / "plant.csv"
    df = write_two_twins(src, sep=",")
    spiked = df.with_columns(pl.when(pl.int_range(df.height) > 400).then(1000).otherwise(0).alias("label"))
    spiked.write_csv(src)
    with_label_excluded = replay_files([src], "ts", "machine", ["label"], CFG)
    assert with_label_excluded["is_anomaly"].sum() == 0
    as_sensor = replay_files([src], "ts", "machine", [], CFG)
    assert as_sensor["is_anomaly"].sum() > 0


def test_each_id_and_each_file_is_its_own_twin(tmp_path: Path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_two_twins(a)
    write_two_twins(b)
    both = replay_files([a, b], "ts", "machine", ["label"], CFG)
    alone = replay_files([b], "ts", "machine", ["label"], CFG)
    from_b = both.filter(pl.col("file") == str(b)).drop("file")
    assert from_b.equals(alone.drop("file"))


def test_no_look_ahead(tmp_path: Path):
    src = tmp_path / "plant.csv"
    df = write_two_twins(src)
    base = replay_files([src], "ts", "machine", ["label"], CFG)
    cut = 400  # change every row after this one (both twins) in the file
    future = df.with_columns(
        *(pl.when(pl.int_range(df.height) >= cut).then(pl.col(c) * 3 + 7).otherwise(pl.col(c)) for c in ["s0", "s2"])
    )
    changed_src = tmp_path / "changed.csv"
    future.write_csv(changed_src, separator=";")
    changed = replay_files([changed_src], "ts", "machine", ["label"], CFG)
    cutoff = df["ts"][cut]
    keep = pl.col("time") < cutoff
    assert base.filter(keep).drop("file").equals(changed.filter(keep).drop("file"))
    assert not base.filter(~keep).drop("file").equals(changed.filter(~keep).drop("file"))


def test_integer_time_fit_and_failure_columns(tmp_path: Path):
    rows = []
    for unit in range(1, 9):
        initial = 8 * unit  # initial wear differs per unit; it fails when wear reaches 200
        for cycle in range(1, 200 - initial + 1):
            wear = (initial + cycle) / 200
            rows.append({"unit": unit, "cycle": cycle, "w": wear + 0.01 * math.sin(cycle), "x": 1.0})
    fleet = pl.DataFrame(rows)
    fit = tmp_path / "fleet.csv"
    fleet.filter(pl.col("unit") <= 6).write_csv(fit)
    ev = tmp_path / "eval.csv"
    fleet.filter((pl.col("unit") > 6) & (pl.col("cycle") <= 100)).write_csv(ev)
    cfg = ModelConfig(anomaly=CFG.anomaly, failure=FailureConfig(rul_cap=60, horizon=20))
    out = replay_files([ev], "cycle", "unit", [], cfg, fit=[fit])
    assert out.columns == [*OUTPUT_COLUMNS, "rul", "failure_probability"]
    last = out.group_by("id", maintain_order=True).last()
    true_rul = [min(60, 200 - 8 * 7 - 100), min(60, 200 - 8 * 8 - 100)]
    assert np.all(np.abs(last["rul"].to_numpy() - true_rul) < 20)
    assert last["failure_probability"].is_between(0, 1).all()


def test_user_errors_name_file_and_column(tmp_path: Path):
    src = tmp_path / "plant.csv"
    write_two_twins(src)
    with pytest.raises(ReplayError, match=r"plant\.csv: --time-col 'when' is not a column"):
        replay_files([src], "when", None, [], CFG)
    with pytest.raises(ReplayError, match=r"time column 'machine' holds 'm-a'"):
        replay_files([src], "machine", None, [], CFG)


def cli_replay(src: Path, out: Path):
    """``twinflow replay`` of a file of :func:`write_two_twins`, as a user runs it."""
    args = ["replay", str(src), "--time-col", "ts", "--id-col", "machine", "--exclude", "label", "--out", str(out)]
    return CliRunner().invoke(app, args)


def test_cli_replay_writes_csv(tmp_path: Path):
    src = tmp_path / "plant.csv"
    df = write_two_twins(src, n=150)
    out = tmp_path / "scores.csv"
    res = cli_replay(src, out)
    assert res.exit_code == 0, res.output
    got = pl.read_csv(out)
    assert got.columns == OUTPUT_COLUMNS and got.height == df.height
    bad = CliRunner().invoke(app, ["replay", str(src), "--time-col", "nope"])
    assert bad.exit_code == 2


def test_a_sensor_with_a_historians_text_markers_stays_a_sensor(tmp_path: Path):
    """An export that marks missing values with text (`#N/A`) made the whole column text, and the
    sensor was dropped without a word: its anomaly went unseen. It is a sensor, the markers are
    missing values, and the command says how many there were."""
    src = tmp_path / "plant.csv"
    df = write_two_twins(src, sep=",")
    spiked = df.with_columns(pl.when(pl.int_range(df.height) > 450).then(pl.col("s1") + 25).otherwise(pl.col("s1")))
    marked = spiked.with_columns(
        pl.when(pl.int_range(df.height) % 40 == 3)
        .then(pl.lit("#N/A"))
        .otherwise(pl.col("s1").cast(pl.String))
        .alias("s1")
    )
    spiked.write_csv(tmp_path / "clean.csv")
    marked.write_csv(src)
    notes: list[str] = []
    got = replay_files([src], "ts", "machine", ["label"], CFG, note=notes.append)
    clean = replay_files([tmp_path / "clean.csv"], "ts", "machine", ["label"], CFG)
    assert got["is_anomaly"].sum() > 0 and clean["is_anomaly"].sum() > 0
    assert "s1" in ";".join(got.filter(pl.col("is_anomaly") == 1)["sensors"].to_list())
    assert notes == [f"{src}: column 's1': 15 of 600 values are not numbers (e.g. '#N/A'); read as missing"]
    res = cli_replay(src, tmp_path / "o.csv")
    assert res.exit_code == 0 and "15 of 600 values are not numbers" in res.output


def test_decimal_commas_of_a_semicolon_file_are_numbers(tmp_path: Path):
    dots = tmp_path / "dots.csv"
    write_two_twins(dots)  # `;`-separated, decimal points
    commas = tmp_path / "commas.csv"
    commas.write_text(dots.read_text().replace(".", ","))
    a = replay_files([dots], "ts", "machine", ["label"], CFG)
    b = replay_files([commas], "ts", "machine", ["label"], CFG)
    assert a.drop("file").equals(b.drop("file"))
    assert a["anomaly_score"].drop_nulls().len() > 0


def test_unix_times_and_a_given_format_read_as_the_same_timestamps(tmp_path: Path):
    """Unix time in s or ms (an IoT export's usual time) was taken for cycles of an hour each, and the
    same history scored differently than with ISO timestamps; a US-style time could not be read."""
    iso = tmp_path / "iso.csv"
    df = write_two_twins(iso, sep=",")
    t = df["ts"].str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC")
    variants = {
        "s.csv": (t.dt.epoch("s"), "auto"),
        "ms.csv": (t.dt.epoch("ms"), "auto"),
        "us.csv": (t.dt.strftime("%m/%d/%Y %I:%M:%S %p"), "%m/%d/%Y %I:%M:%S %p"),
    }
    want = replay_files([iso], "ts", "machine", ["label"], CFG).drop("file", "time")
    for name, (times, time_format) in variants.items():
        df.with_columns(times.alias("ts")).write_csv(tmp_path / name)
        notes: list[str] = []
        got = replay_files(
            [tmp_path / name], "ts", "machine", ["label"], CFG, note=notes.append, time_format=time_format
        )
        assert got.drop("file", "time").equals(want), name
        assert ("Unix time" in " ".join(notes)) == (time_format == "auto"), notes
    with pytest.raises(ReplayError, match=r"--time-format"):  # the US file without its format: the hint
        replay_files([tmp_path / "us.csv"], "ts", "machine", ["label"], CFG)
    as_cycles = replay_files([tmp_path / "s.csv"], "ts", "machine", ["label"], CFG, time_format="cycles")
    assert as_cycles["anomaly_score"].drop_nulls().len() > 0  # counts, read as asked


def test_a_true_false_column_is_the_operating_point_as_live(tmp_path: Path):
    """The live models take a boolean (a pump running) as context; replay dropped such a column, so a
    backtest of the same history scored otherwise than the flow would."""
    from datetime import UTC, datetime, timedelta

    from operators.ml.live_state import LiveModelConfig
    from operators.ml.live_step import Reading, step
    from operators.records.alerts import AnomalyScore

    rng = np.random.default_rng(3)
    rows, t0 = [], datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(800):
        running = (i // 250) % 2 == 0  # a stop and a start, each settling for 180 s
        flow = (40.0 if running else 5.0) + rng.normal(0, 0.3)
        rows.append(
            {"ts": t0 + timedelta(seconds=i), "flow": flow, "temp": 30 + rng.normal(0, 0.2), "running": running}
        )
    src = tmp_path / "pump.csv"
    pl.DataFrame(rows).with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(src)
    assert "true" in src.read_text()
    got = replay_files([src], "ts", None, [], CFG)
    live, state, want = LiveModelConfig(CFG, forecast_every=0, predict_every=0), None, []
    for r in rows:
        state, out = step(
            state, Reading(r["ts"], {"flow": r["flow"], "temp": r["temp"], "running": r["running"]}), live, ""
        )
        want.append(next((o.score for o in out if isinstance(o, AnomalyScore)), None))
    assert got["anomaly_score"].to_list() == want
    scored = [w is not None for w in want]
    assert sum(scored) > 150 and not all(scored[CFG.anomaly.warmup :])  # scored, and settling after a change


def test_the_output_holds_the_published_numbers_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Replay rounded `anomaly_score` to 6 and `health` to 4 decimals: a threshold tuned on the
    backtest (a score of 0.4999996 printed as 0.5) was not the one the live flow would cross. The CSV
    holds the floats the live step publishes, bit for bit once read back."""
    from datetime import UTC, datetime

    from operators.ml.live_state import LiveModelConfig
    from operators.ml.live_step import Reading, step
    from operators.records.alerts import AnomalyScore

    src, out = tmp_path / "plant.csv", tmp_path / "scores.csv"
    df = write_two_twins(src, n=250)
    monkeypatch.setenv("TWINFLOW_ML__ANOMALY__WARMUP", str(CFG.anomaly.warmup))  # the CLI's settings: CFG's
    monkeypatch.setenv("TWINFLOW_ML__ANOMALY__WINDOW", str(CFG.anomaly.window))
    res = cli_replay(src, out)
    assert res.exit_code == 0, res.output
    got = pl.read_csv(out, infer_schema_length=None).filter(pl.col("id") == "m-a")
    live, state, want = LiveModelConfig(CFG, forecast_every=0, predict_every=0), None, []
    for r in df.filter(pl.col("machine") == "m-a").iter_rows(named=True):
        ts = datetime.fromisoformat(r["ts"]).replace(tzinfo=UTC)
        state, recs = step(state, Reading(ts, {s: r[s] for s in ("s0", "s1", "s2")}), live, "m-a")
        score = next((o for o in recs if isinstance(o, AnomalyScore)), None)
        want.append((None, None) if score is None else (score.score, score.health))
    assert list(zip(got["anomaly_score"], got["health"], strict=True)) == want
    assert sum(s is not None for s, _ in want) == 150


def test_a_row_without_any_value_is_no_sample(tmp_path: Path):
    """A row whose sensor cells are all empty (an export's gap, `#N/A` everywhere) was stepped as a
    sample of the held values, learned and counted, though a device sends nothing for it: the live
    flow scored every later reading differently (180 rows, by up to 0.18). It is no sample: its own
    output row is empty, the others are those of the file without it."""
    src, gap = tmp_path / "plant.csv", tmp_path / "gap.csv"
    df = write_two_twins(src, n=250, sep=",")
    missing = pl.DataFrame({"ts": ["2026-01-01 00:02:30"], "machine": ["m-a"]})
    row = missing.with_columns(
        pl.lit("#N/A").alias("s0"), *(pl.lit(None).cast(df[c].dtype).alias(c) for c in ("s1", "s2", "label"))
    )
    pl.concat([df.with_columns(pl.col("s0").cast(pl.String)), row]).sort("ts", maintain_order=True).write_csv(gap)
    want = replay_files([src], "ts", "machine", ["label"], CFG).drop("file")
    got = replay_files([gap], "ts", "machine", ["label"], CFG).drop("file")
    empty = (pl.col("time") == "2026-01-01 00:02:30") & (pl.col("id") == "m-a") & pl.col("anomaly_score").is_null()
    assert got.filter(empty).height == 1
    assert got.filter(~empty).equals(want)
    assert want["anomaly_score"].drop_nulls().len() == 300


def test_a_file_without_id_column_is_the_twin_named_by_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A file without --id-col was the twin "", which no `[[ml.ranges]]` glob but `*` matches: a
    sensor the live flow calls out_of_range (its rule for `pump-*`) was scored as a machine anomaly
    in the backtest (SKAB through the live pipeline: 513 of 2554 rows differed). `--twin` names it."""
    src = tmp_path / "pump.csv"
    df = write_two_twins(src, n=600).filter(pl.col("machine") == "m-a").drop("machine")
    df.with_columns(pl.when(pl.int_range(df.height) > 500).then(pl.col("s1") + 50).otherwise(pl.col("s1"))).write_csv(
        src, separator=";"
    )
    monkeypatch.setenv("TWINFLOW_ML__ANOMALY__WARMUP", str(CFG.anomaly.warmup))
    monkeypatch.setenv("TWINFLOW_ML__RANGES", '[{"sensor": "s1", "high": 40.0, "twins": "pump-*"}]')

    def faults(*args: str) -> list[str]:
        out = tmp_path / "out.csv"
        res = CliRunner().invoke(
            app, ["replay", str(src), "--time-col", "ts", "--exclude", "label", "--out", str(out), *args]
        )
        assert res.exit_code == 0, res.output
        got = pl.read_csv(out, infer_schema_length=None)
        assert set(got["id"].to_list()) == {args[1] if args else ""}
        return got.filter(pl.col("kind") == "sensor_fault")["sensors"].unique().to_list()

    assert faults() == []
    assert faults("--twin", "pump-7") == ["s1=out_of_range"]
    with pytest.raises(ReplayError, match="--twin"):
        replay_files([src], "ts", "label", [], CFG, twin="pump-7")


def test_names_the_live_flow_refuses_are_noted(tmp_path: Path):
    """A header like SKAB's `Volume Flow RateRMS` was scored without a word, though no envelope can
    carry that sensor (nor the twin `Pump 7`): live, those values are refused. The command says so."""
    src = tmp_path / "rig.csv"
    df = write_two_twins(src, n=20, sep=",").rename({"s1": "Volume Flow RateRMS"})
    df.with_columns(pl.col("machine").replace("m-b", "Pump 7")).write_csv(src)
    notes: list[str] = []
    replay_files([src], "ts", "machine", ["label"], CFG, note=notes.append)
    assert [n.split(":")[1] for n in notes] == [
        " column 'Volume Flow RateRMS' is no sensor name a live twin can send (letters, digits, _ . -, up to 64)",
        " id 'Pump 7' is no twin_id the live flow accepts (letters, digits, . _ ",
    ]
