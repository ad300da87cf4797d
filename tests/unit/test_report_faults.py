"""The fault schedule format and the alert-vs-fault matching of twinflow/report.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twinflow.report import AlertRow, Fault, evaluate, load_faults

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


def test_lead_time_missed_faults_and_false_alarms():
    faults = [Fault("p1", "bearing", at(60), at(90)), Fault("p2", "leak", at(10), at(20))]
    alerts = [
        alert("a1", "p1", 45),  # 15 min before the onset: early warning
        alert("a2", "p1", 70, "failure"),  # same fault, later
        alert("a3", "p1", 200),  # long after end + grace: false alarm
        alert("a4", "p3", 50),  # twin without faults: false alarm
        alert("a5", "p2", 12, "desync"),  # not a detecting kind
    ]
    ev = evaluate(faults, alerts, until=at(300))
    assert [(r.fault.twin_id, r.detected, r.lead_s) for r in ev.results] == [
        ("p1", True, 900.0),
        ("p2", False, None),
    ]
    assert [a.alert_id for a in ev.false_alarms] == ["a3", "a4"]
    s = ev.summary
    assert (s["faults"], s["detected"], s["missed"], s["false_alarms"], s["alerts"]) == (2, 1, 1, 2, 4)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["median_lead_s"] == 900.0


def test_grace_forgives_settling_without_counting_it_as_a_detection():
    """The simulator benchmark's windows: no lead, 10 min grace, detection only up to the end."""
    faults = [Fault("p1", "stuck", at(10), at(20))]
    alerts = [alert("a1", "p1", 25), alert("a2", "p1", 35)]  # after the end: within / beyond the grace
    ev = evaluate(faults, alerts, until=at(60), max_lead=timedelta(0), detect_grace=timedelta(0))
    assert not ev.results[0].detected
    assert [a.alert_id for a in ev.false_alarms] == ["a2"]
    early = evaluate(faults, [alert("a0", "p1", 9)], until=at(60), max_lead=timedelta(0))
    assert [a.alert_id for a in early.false_alarms] == ["a0"]  # before the onset: no lead allowed
    ev = evaluate(faults, alerts, until=at(60))  # the report's defaults: the grace detects too
    assert ev.results[0].detected and ev.results[0].lead_s == -900.0
