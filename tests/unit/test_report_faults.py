"""The fault schedule format and the alert-vs-fault matching of twinflow/demo/report.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twinflow.demo.report import AlertRow, Fault, evaluate, load_faults

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def alert(aid: str, twin: str, minutes: float, kind: str = "anomaly") -> AlertRow:
    return AlertRow(aid, twin, kind, "major", "open", at(minutes), None, None, "")


def test_json_and_csv_schedules(tmp_path):
    js = tmp_path / "f.json"
    js.write_text('{"faults": [{"twin_id": "p1", "fault": "bearing", "onset": "2026-11-25T08:10:00Z", "end": null}]}')
    assert load_faults(js) == [Fault("p1", "bearing", at(10), None)]
    cs = tmp_path / "f.csv"
    cs.write_text("twin_id,fault,onset,end\np2,leak,2026-11-25T08:00:00+00:00,2026-11-25T08:30:00Z\n")
    assert load_faults(cs) == [Fault("p2", "leak", at(0), at(30))]
    bad = tmp_path / "bad.csv"
    bad.write_text("twin_id,fault,onset,end\np2,leak,2026-11-25T08:00:00,\n")
    with pytest.raises(ValueError, match=r"bad.csv: fault 1: .*no time zone"):
        load_faults(bad)


def test_an_alert_before_the_onset_is_a_false_alarm_unless_it_predicts():
    faults = [Fault("p1", "bearing", at(60), at(90)), Fault("p2", "leak", at(10), at(20))]
    alerts = [
        alert("a1", "p1", 45),  # anomaly 15 min before the onset: a false alarm, not an early warning
        alert("a2", "p1", 70, "failure"),  # after the onset: detects it, 10 min after
        alert("a3", "p1", 200),  # long after end + grace: false alarm
        alert("a4", "p3", 50),  # twin without faults: false alarm
        alert("a5", "p2", 12, "desync"),  # not a detecting kind
        alert("a6", "p1", 30, "forecast_breach"),  # a prediction 30 min before the onset: shown as such
        alert("a7", "p1", -30, "failure"),  # a prediction 90 min before: beyond the 1 h horizon, false
    ]
    ev = evaluate(faults, alerts, until=at(300))
    assert [(r.fault.twin_id, r.detected, r.delay_s, r.predicted, r.lead_s) for r in ev.results] == [
        ("p1", True, 600.0, True, 1800.0),
        ("p2", False, None, False, None),
    ]
    assert sorted(a.alert_id for a in ev.false_alarms) == ["a1", "a3", "a4", "a7"]
    s = ev.summary
    assert (s["faults"], s["detected"], s["predicted"], s["missed"], s["false_alarms"], s["alerts"]) == (
        2,
        1,
        1,
        1,
        4,
        6,
    )
    assert s["precision"] == round(2 / 6, 4) and s["recall"] == 0.5
    assert s["median_delay_s"] == 600.0 and s["median_lead_s"] == 1800.0


def test_condition_and_sensor_fault_alerts_detect():
    faults = [Fault("p1", "wear", at(10), at(40)), Fault("p2", "stuck", at(10), at(20))]
    ev = evaluate(faults, [alert("c", "p1", 25, "condition"), alert("s", "p2", 11, "sensor_fault")], until=at(60))
    assert [r.delay_s for r in ev.results] == [900.0, 60.0] and not ev.false_alarms


def test_grace_forgives_settling_without_counting_it_as_a_detection():
    """The simulator benchmark's windows: 10 min grace, detection only up to the end."""
    faults = [Fault("p1", "stuck", at(10), at(20))]
    alerts = [alert("a1", "p1", 25), alert("a2", "p1", 35)]  # after the end: within / beyond the grace
    ev = evaluate(faults, alerts, until=at(60), detect_grace=timedelta(0))
    assert not ev.results[0].detected
    assert [a.alert_id for a in ev.false_alarms] == ["a2"]
    early = evaluate(faults, [alert("a0", "p1", 9)], until=at(60))
    assert [a.alert_id for a in early.false_alarms] == ["a0"]  # one minute before the onset: false
    ev = evaluate(faults, alerts, until=at(60))  # the report's defaults: the grace detects too
    assert ev.results[0].detected and ev.results[0].delay_s == 900.0
