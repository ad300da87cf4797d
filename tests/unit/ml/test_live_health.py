"""The live per-twin step (what the models flow and ``twinflow replay`` run): health, sensor faults
and silence on the records, rebaseline and repair, and the alert kinds they open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from operators.alerts.ordering import step as alerts_step
from operators.alerts.rules import AlertRules
from operators.ml.config import ModelConfig
from operators.ml.live_state import LiveModelConfig, silence_due
from operators.ml.live_step import Event, Reading, Rebaseline, Tick, step
from operators.ml.sensor_limits import SensorLimit
from operators.records.alerts import AnomalyScore, decode, encode

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CFG = LiveModelConfig(ModelConfig(), forecast_every=0)


def feed(state, data: np.ndarray, start: int = 0, cfg: LiveModelConfig = CFG, twin: str = "p1"):
    records = []
    for i, row in enumerate(data):
        readings = {f"s{j}": float(v) for j, v in enumerate(row)}
        state, out = step(state, Reading(T0 + timedelta(seconds=start + i), readings), cfg, twin)
        records += out
    return state, records


def noisy(n: int, seed: int = 0) -> np.ndarray:
    return 10.0 + np.random.default_rng(seed).normal(0, 0.1, (n, 3))


def test_records_carry_health_kind_and_sensor_faults_and_round_trip():
    data = noisy(3000)
    data[2000:2500, 1] = data[1999, 1]  # frozen
    _state, records = feed(None, data)
    scores = [r for r in records if isinstance(r, AnomalyScore)]
    assert scores[0].health is None and scores[-1].health is not None  # null while the reference is learned
    assert all(0.0 <= r.score < 1.0 and r.threshold == CFG.model.anomaly.threshold for r in scores)
    frozen = [r for r in scores if r.sensor_faults == {"s1": "frozen"}]
    assert frozen and all(r.kind == "sensor_fault" for r in frozen if not r.is_anomaly)
    assert decode(AnomalyScore, encode(frozen[0])) == frozen[0]


def test_sensor_fault_and_condition_alerts_open_and_resolve():
    data = noisy(4000, seed=1)
    data[1500:1900, 2] = data[1499, 2]  # frozen for 400 s
    data[2500:, 0] += 3.0  # a lasting change of s0 (30 σ)
    _, records = feed(None, data)
    lifecycle, opened = None, []
    rules = AlertRules()
    for rec in records:
        lifecycle, alerts = alerts_step(lifecycle, rec, rules)
        opened += [a for a in alerts if a.event in ("opened", "resolved")]
    opened += [a for a in lifecycle.flush() if a.event in ("opened", "resolved")]
    events = [(a.kind, a.event) for a in opened]
    assert ("sensor_fault", "opened") in events and ("sensor_fault", "resolved") in events
    fault = next(a for a in opened if a.kind == "sensor_fault")
    assert fault.evidence["sensor_faults"] == {"s2": "frozen"} and "s2 frozen" in fault.summary
    condition = [a for a in opened if a.kind == "condition"]
    assert [a.event for a in condition] == ["opened"]  # stays open: changed and stays changed
    assert condition[0].evidence["drivers"] == {"s0": condition[0].evidence["drivers"]["s0"]}
    assert condition[0].opened_at >= T0 + timedelta(seconds=2500)


def test_silence_is_decided_by_a_timer_and_cleared_by_the_next_reading():
    state, _ = feed(None, noisy(600))
    due = silence_due(state, CFG)
    assert due is not None
    wall_due = due.timestamp() - state.wall_at_last
    assert wall_due >= CFG.model.sensor_health.silence_min_s - 1e-3  # (datetimes keep microseconds)
    state, early = step(state, Tick(datetime.fromtimestamp(state.wall_at_last + 1.0, UTC)), CFG, "p1")
    assert early == []  # not silent yet
    state, late = step(state, Tick(due + timedelta(seconds=1)), CFG, "p1")
    assert [r.sensor_faults for r in late] == [{"s0": "silent", "s1": "silent", "s2": "silent"}]
    assert late[0].kind == "sensor_fault" and late[0].ts > T0 + timedelta(seconds=599)
    state, again = step(state, Tick(due + timedelta(seconds=2)), CFG, "p1")
    assert again == []  # nothing changed: nothing new to publish
    state, out = feed(state, noisy(1, seed=9), start=700)
    assert not next(r for r in out if isinstance(r, AnomalyScore)).sensor_faults


def test_rebaseline_item_and_repair_event_learn_the_reference_again():
    data = noisy(3000, seed=2)
    data[1500:, 1] += 3.0
    state, records = feed(None, data)
    assert records[-1].health < 0.5
    state, _ = step(state, Rebaseline("s1", "ann"), CFG, "p1")
    state, records = feed(
        state, data[-1:].repeat(600, axis=0) + np.random.default_rng(3).normal(0, 0.1, (600, 3)), 3000
    )
    assert [r for r in records if isinstance(r, AnomalyScore)][-1].health > 0.9
    state, _ = step(state, Event("repair", T0 + timedelta(seconds=3600)), CFG, "p1")
    assert state.model.condition is not None and not state.model.condition.ready  # learned afresh


def test_physical_ranges_come_from_the_settings_rules_by_twin():
    cfg = LiveModelConfig(
        ModelConfig(), forecast_every=0, ranges=(SensorLimit(sensor="s0", low=0.0, high=50.0, twins="p*"),)
    )
    data = noisy(1000, seed=4)
    data[900:920, 0] = 80.0
    _, records = feed(None, data, cfg=cfg, twin="p7")
    assert any(r.sensor_faults.get("s0") == "out_of_range" for r in records if isinstance(r, AnomalyScore))
    _, other = feed(None, data, cfg=cfg, twin="q7")  # the rule's twins glob does not match
    assert not any(r.sensor_faults for r in other if isinstance(r, AnomalyScore))
