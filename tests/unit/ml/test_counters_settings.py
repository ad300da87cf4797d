"""``[ml.counters]`` from the outside: ``twinflow replay`` with a settings file and a TWINFLOW_ML__
variable (docs/ml.md, "What the models do with each kind of signal").

One file: a temperature and a pressure, an energy meter whose reading dips by 0.05 kWh now and then
(automatic detection calls it no counter: its level drifts away from the reference) and a bearing
temperature in whole degrees that is steady, then rises one degree every 100 s without ever falling
(automatic detection takes it for a counter after 20 degrees: the drift leaves the health index)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.replay_cli import T0, replay_csv, temp_and_pressure, twinflow, write_csv_1hz

N = 6000
DRIFT = 3000  # the bearing starts to drift here


def _file(path: Path) -> None:
    rng = np.random.default_rng(7)
    load = np.cumsum(rng.normal(0, 0.01, N))
    energy = 100.0 + np.cumsum(np.abs(rng.normal(0.02, 0.005, N)))
    for i in (1000, 2500, 4000):
        energy[i:] -= 0.05  # the meter's reading dips once in a while (a correction)
    bearing = np.full(N, 55.0)
    bearing[DRIFT:] += np.floor(np.arange(N - DRIFT) / 100)
    write_csv_1hz(path, {**temp_and_pressure(rng, load), "energy_kwh": energy, "bearing_temp": bearing})


def _replay(tmp_path: Path, name: str, toml: str | None, **env: str) -> pl.DataFrame:
    src, out = tmp_path / "plant.csv", tmp_path / f"{name}.csv"
    if not src.exists():
        _file(src)
    if toml is not None:
        (tmp_path / f"{name}.toml").write_text(toml)
        env["TWINFLOW_CONFIG"] = str(tmp_path / f"{name}.toml")
    got = replay_csv(src, out, "bearing-1", env)
    return got.with_columns(pl.int_range(pl.len()).alias("row"))


def _alert_rows(got: pl.DataFrame, lo: int, hi: int) -> int:
    return int(got.filter((pl.col("row") >= lo) & (pl.col("row") < hi) & (pl.col("kind").fill_null("") != "")).height)


def test_named_counters_count_and_named_levels_keep_a_quantised_drift_in_the_health_index(tmp_path: Path):
    # As it comes: the dipping meter is no counter (its level raises `condition` rows before any
    # fault), the bearing's drift is taken for a counter and leaves the health index by the end.
    plain = _replay(tmp_path, "plain", None)
    assert _alert_rows(plain, 0, DRIFT) > 100
    # The meter named a counter in the settings file: counted (any dip is a reset), nothing flagged
    # before the drift; the drift is seen at first but masked once the bearing counts as a counter.
    named = _replay(tmp_path, "named", '[ml.counters]\nsensors = ["*_kwh"]\n')
    assert _alert_rows(named, 0, DRIFT) == 0 and named["is_anomaly"][:DRIFT].sum() == 0
    assert named["health"].drop_nulls()[-1] > 0.9
    # ... and the bearing named a level (a variable next to the file): the drift stays in the health
    # index to the end, and still nothing before it.
    levels = _replay(
        tmp_path, "levels", '[ml.counters]\nsensors = ["*_kwh"]\n', TWINFLOW_ML__COUNTERS__LEVELS='["bearing_*"]'
    )
    assert _alert_rows(levels, 0, DRIFT) == 0 and levels["is_anomaly"][:DRIFT].sum() == 0
    late = levels.filter(pl.col("row") >= N - 1000)
    assert late["health"].drop_nulls().max() < 0.5
    assert (late["kind"] == "condition").all()
    assert late["sensors"].str.contains("bearing_temp").all()


def test_a_list_in_a_variable_that_is_no_json_is_a_configuration_error(tmp_path: Path):
    res = twinflow(["settings", "show"], tmp_path, {"TWINFLOW_ML__COUNTERS__SENSORS": "*_kwh"}, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "TWINFLOW_ML__COUNTERS__SENSORS (environment): [ml.counters] sensors" in res.stderr
    assert "JSON list" in res.stderr and "Traceback" not in res.stderr


def test_names_decide_before_detection():
    from operators.ml.config import CountersConfig
    from operators.ml.counters import Counters

    rising = [{"kwh": 10.0 + t, "temp": 20.0 + t, "speed_sp": 100.0 + t} for t in range(40)]
    off = Counters()  # detection off: only named counters
    cfg = CountersConfig(detect=False, sensors=("KWH",))  # globs ignore case
    outs = [off.apply(float(t), r, config=cfg, context=("*_sp",)) for t, r in enumerate(rising)]
    assert outs[0] == (None, False) and not any(changed for _, changed in outs)
    assert off.counters == {"kwh"} and outs[-1][0] == {"kwh": 1.0, "temp": 59.0, "speed_sp": 139.0}
    assert off.apply(40.0, {"kwh": 48.5}, config=cfg) == ({"kwh": 1.0}, False)  # a named counter falls: a reset
    levels = Counters()  # detection on, but `temp*` is a level and setpoints are never counters
    cfg = CountersConfig(levels=("temp*",), sensors=("temp*",))  # a level wins over a counter glob
    changes = [levels.apply(float(t), r, config=cfg, context=("*_sp",))[1] for t, r in enumerate(rising)]
    assert changes.index(True) == 20 and changes.count(True) == 1  # the 20th rise of `kwh` only
    assert levels.counters == {"kwh"} and {"temp", "speed_sp"} <= levels.never
    fewer = Counters()
    assert [fewer.apply(float(t), {"x": float(t + 1)}, config=CountersConfig(rises=5))[1] for t in range(10)].index(
        True
    ) == 5


def test_a_twin_resumed_under_changed_counters_settings_adopts_them():
    import pickle

    from operators.ml.config import CountersConfig, ModelConfig
    from operators.ml.live_state import LiveModelConfig
    from operators.ml.live_step import Reading, step

    state = None
    for i in range(60):  # a quantised temperature rising in steps: taken for a counter
        state, _ = step(
            state, Reading(T0 + timedelta(seconds=i), {"bearing_temp": 50.0 + i // 2, "p": 1.0}), LiveModelConfig()
        )
    assert state.model.counters.counters == {"bearing_temp"}
    resumed = pickle.loads(pickle.dumps(state))
    cfg = LiveModelConfig(ModelConfig(counters=CountersConfig(levels=("bearing_*",))))
    resumed, _ = step(resumed, Reading(T0 + timedelta(seconds=60), {"bearing_temp": 80.0, "p": 1.0}), cfg)
    assert not resumed.model.counters.counters and "bearing_temp" in resumed.model.counters.never
    learned = resumed.model.anomaly.n_learned
    assert learned <= 1  # the scoring models restarted
    again, _ = step(resumed, Reading(T0 + timedelta(seconds=61), {"bearing_temp": 80.0, "p": 1.0}), cfg)
    assert again.model.anomaly.n_learned == learned + 1  # once, not on every step


def test_a_model_config_pickled_before_counters_loads_with_the_default():
    from operators.ml.config import CountersConfig, ModelConfig

    cls, values = ModelConfig().__reduce_ex__(5)  # what a snapshot stores; before: one field fewer
    assert cls(*values[:-1]).counters == CountersConfig()


def test_a_named_counter_coarse_for_the_sample_rate_raises_nothing_while_the_machine_runs(tmp_path: Path):
    # A 1-kWh register read every second at 7.2 kW steps every ~500 readings: scored as its step
    # over the time since the step before (held), not as 0 with a spike per step (before: a
    # `condition` alert on 2,440 of 3,000 rows, benchmarks/coarse_counters.py). Drawing 3x the
    # energy from 2,200 s on is seen at the first step after it.
    n, fault = 3000, 2200
    for name, factor in (("steady", 1.0), ("faster", 3.0)):
        rng = np.random.default_rng(7)
        load = np.cumsum(rng.normal(0, 0.01, n))
        used = np.abs(rng.normal(0.002, 0.0005, n))
        used[fault:] *= factor
        (tmp_path / name).mkdir()
        energy = np.floor(12345.0 + np.cumsum(used))
        write_csv_1hz(tmp_path / name / "plant.csv", {**temp_and_pressure(rng, load), "energy_kwh": energy})
    steady = _replay(tmp_path / "steady", "coarse", '[ml.counters]\nsensors = ["*_kwh"]\n')
    assert steady.height == n and _alert_rows(steady, 0, n) == 0 and steady["is_anomaly"].sum() == 0
    faster = _replay(tmp_path / "faster", "coarse", '[ml.counters]\nsensors = ["*_kwh"]\n')
    assert _alert_rows(faster, 0, fault) == 0 and _alert_rows(faster, fault, fault + 300) > 0
