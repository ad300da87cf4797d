"""Statuses sent as numbers from the outside: ``twinflow replay`` of a pump whose 0/1 running flag
switches every 8-20 minutes and of a machine whose mode 0..3 does (the flow follows the status),
with ``[ml.states]`` in a TWINFLOW_ML__ variable (docs/ml.md, "What the models do with each kind of
signal"). Scored as a level, each switch was an alarm (794 alert rows for the flag, 6 episodes for
the mode, the last one hiding a real fault); taken as context, as a boolean is, none."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmarks.replay_cli import T0, replay_csv, write_csv_1hz
from tests.status_signals import FAULT, plant_with_status


def _replay(tmp_path: Path, status: str, fault: bool, **env: str) -> pl.DataFrame:
    src = tmp_path / f"{status}-{fault}.csv"
    out = tmp_path / f"{status}-{fault}-{len(env)}-scores.csv"
    if not src.exists():
        write_csv_1hz(src, plant_with_status(status, fault))
    got = replay_csv(src, out, "pump-1", env)
    return got.with_columns(pl.int_range(pl.len()).alias("row"))


def _alert_rows(got: pl.DataFrame) -> pl.DataFrame:
    return got.filter(pl.col("kind").fill_null("") != "")


def _episodes(got: pl.DataFrame) -> list[int]:
    flags = got["is_anomaly"].to_numpy().astype(int)
    return np.flatnonzero(np.diff(np.r_[0, flags]) == 1).tolist()


def test_a_running_flag_sent_as_0_1_raises_no_alert_unless_named_a_level(tmp_path: Path):
    got = _replay(tmp_path, "running", fault=False)
    assert _alert_rows(got).height == 0 and not _episodes(got)
    assert got["anomaly_score"].drop_nulls().len() > 3500  # scored between the switches (each settles 3-10 min)
    # Named a level in [ml.states] (a JSON list in a variable): scored as a level again, its
    # switches are alarms as before.
    level = _replay(tmp_path, "running", fault=False, TWINFLOW_ML__STATES__LEVELS='["run*"]')
    assert _alert_rows(level).height > 100


@pytest.mark.parametrize("status", ["mode", "running"])
def test_a_fault_next_to_a_switching_status_is_still_detected(tmp_path: Path, status: str):
    got = _replay(tmp_path, status, fault=True)
    assert _episodes(got) == [FAULT[0]]  # the fault's first row; no switch raised one
    alerts = _alert_rows(got)
    assert alerts["row"].min() == FAULT[0] and alerts["row"].max() < FAULT[1] + 60
    assert (alerts["sensors"].str.contains("pressure_bar")).all()


def _steps(state, rows, cfg, start: int = 0, maintenance: bool = False):
    from operators.ml.live_step import Reading, Status, step

    state, _ = step(state, Status(maintenance), cfg, "room-1")
    for i, values in enumerate(rows, start):
        state, _ = step(state, Reading(T0 + timedelta(seconds=i), values), cfg, "room-1")
    return state


def test_a_quantised_level_taken_for_a_state_is_a_level_again_at_its_first_new_value():
    """A cold-room temperature in whole degrees that only read 0 and 1 °C so far is taken for a
    state (context); its first fractional value, or a fifth distinct value, makes it a level again:
    the scoring models restart with it as a health reading, and it is never a state again."""
    from operators.ml.live_state import LiveModelConfig

    cfg = LiveModelConfig(forecast_every=0)
    rng = np.random.default_rng(2)
    cold = [{"room_c": float(rng.integers(0, 2)), "fan_a": 3 + rng.normal(0, 0.01)} for _ in range(500)]
    state = _steps(None, cold, cfg)
    model = state.model
    assert model.states.states == {"room_c"} and model.operating_point.context == ["room_c"]
    assert model.anomaly.sensors == ["fan_a"]
    state = _steps(state, [{"room_c": 1.5, "fan_a": 3.0}], cfg, 500)
    model = state.model
    assert not model.states.states and "room_c" in model.states.never
    assert model.anomaly.n_learned <= 1  # restarted
    state = _steps(state, cold[:50], cfg, 501)  # 0 and 1 again: still a level
    assert state.model.operating_point.context == [] and state.model.anomaly.sensors == ["fan_a", "room_c"]
    assert state.model.anomaly.n_learned == 51  # no further restart
    more = _steps(None, cold[:100] + [{"room_c": float(v), "fan_a": 3.0} for v in (2, 3, 2, 4)], cfg)
    assert not more.model.states.states and "room_c" in more.model.states.never  # 0, 1, 2, 3, then 4


def test_names_decide_and_maintenance_learns_no_state():
    from operators.ml.config import ModelConfig, StatesConfig
    from operators.ml.live_state import LiveModelConfig
    from operators.ml.states import States

    s = States()
    cfg = StatesConfig(detect=False, sensors=("*_MODE",), levels=("vib*",))
    rows = [{"op_mode": 12.0 + t % 7, "vib_mm_s": float(t % 2), "door": float(t % 2)} for t in range(20)]
    assert not any(s.apply(r, config=cfg) for r in rows)  # named: a state from its first reading, no restart
    assert s.states == {"op_mode"} and {"vib_mm_s", "door"} <= s.never  # a level by name; detection off
    setpoint = States()  # context by its name already
    assert not any(setpoint.apply({"x_sp": float(t % 2)}, context=("*_sp",)) for t in range(5))
    assert "x_sp" in setpoint.never
    counted = States()  # a named counter is none either
    assert not any(counted.apply({"pieces": float(t % 2)}, counters=("PIECES",)) for t in range(5))
    assert "pieces" in counted.never
    held = States()  # in maintenance a flag that switches is no state yet, ...
    assert not any(held.apply({"door": float(t % 2)}, learn=False) for t in range(10))
    assert not held.apply({"door": 1.0}) and not held.states  # ... its values count once learning resumes
    assert held.apply({"door": 0.0}) and held.states == {"door"}
    five = States()
    assert [five.apply({"m": float(v)}, config=StatesConfig(values=5)) for v in (3, 5, 4, 2, 1, 0)] == [
        False, True, False, False, False, True,
    ]  # fmt: skip
    assert "m" in five.never  # a sixth value
    big = States()  # a step from 0 to 1000: no state
    assert not any(big.apply({"x": v}) for v in (0.0, 0.0, 1000.0, 1000.0)) and "x" in big.never
    far = States()  # whole values away from 0 (a temperature in whole degrees): no state
    assert not any(far.apply({"t": float(55 + i % 2)}) for i in range(10)) and not far.states
    # a twin resumed under changed [ml.states] settings classifies its sensors afresh
    state = _steps(None, [{"door": float(i % 2), "p": 1.0 + 0.01 * (i % 3)} for i in range(30)], LiveModelConfig())
    assert state.model.states.states == {"door"}
    named = LiveModelConfig(ModelConfig(states=StatesConfig(levels=("door",))))
    state = _steps(state, [{"door": 1.0, "p": 1.0}], named, 30)
    assert not state.model.states.states and "door" in state.model.states.never


def test_a_model_state_and_config_from_before_states_load():
    from operators.ml.config import ModelConfig, StatesConfig
    from operators.ml.states import States
    from operators.ml.twin_model import TwinModel

    cls, values = ModelConfig().__reduce_ex__(5)  # what a snapshot stores; before: one field fewer
    assert cls(*values[:-1]).states == StatesConfig()
    m = TwinModel()
    for t in range(50):
        m.update(float(t), {"a": float(t % 2), "b": 1.0 + 0.1 * (t % 3)})
    state = m.__getstate__()
    del state["states"]
    state["_v"] = 5
    op = state["operating_point"].__getstate__()
    del op["flags"]
    again = TwinModel.__new__(TwinModel)
    again.__setstate__(state)
    assert isinstance(again.states, States)
    again.update(50.0, {"a": 1.0, "b": 1.0})
    point = type(m.operating_point).__new__(type(m.operating_point))
    point.__setstate__(op)
    assert point.flags == frozenset()
