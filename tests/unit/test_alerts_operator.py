"""The alert lifecycle operator on plain records with an event-time clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from operators.alerts.episode import alert_id_for
from operators.alerts.lifecycle import TwinAlerts
from operators.alerts.ordering import step
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import (
    AlertAction,
    AnomalyScore,
    DesyncEscalation,
    FailurePrediction,
    ForecastPoint,
    TwinStatus,
    desync_escalation,
    encode,
)
from operators.records.envelope import Rejected
from operators.records.twin import DesyncEvent

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
RULES = AlertRules(anomaly=KindRule(min_duration_s=30, cool_down_s=60), escalate_after_s=0)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def score(s: float, value: float, twin: str = "p1", **contrib: float) -> AnomalyScore:
    return AnomalyScore(twin, at(s), value, 1.0, value >= 1.0, contrib or {"temp": 0.6, "rpm": 0.4})


def feed(engine: TwinAlerts, records) -> list:
    out = []
    for r in records:
        out += engine.apply(r)
    return out


def test_opens_after_min_duration_once_and_resolves_after_cool_down():
    e = TwinAlerts("p1", RULES)
    assert feed(e, [score(s, 0.2) for s in range(0, 60, 5)]) == []
    # fault: above threshold from t=60; not yet open at t=85 (25 s < 30 s)
    assert feed(e, [score(s, 2.0) for s in range(60, 90, 5)]) == []
    opened = feed(e, [score(90, 2.0)])
    assert [(a.event, a.state, a.opened_at) for a in opened] == [("opened", "open", at(90))]
    # the fault lasts: no duplicates
    assert feed(e, [score(s, 1.9) for s in range(95, 400, 5)]) == []
    # recovery: below clear level for < cool-down keeps it open, then it resolves once
    assert feed(e, [score(s, 0.3) for s in range(400, 455, 5)]) == []
    closed = feed(e, [score(s, 0.3) for s in range(455, 600, 5)])
    assert [(a.event, a.state, a.resolved_by, a.alert_id) for a in closed] == [
        ("resolved", "resolved", "auto", opened[0].alert_id)
    ]
    assert closed[0].version == 2


def test_hysteresis_band_neither_opens_nor_clears():
    e = TwinAlerts("p1", RULES)
    feed(e, [score(s, 1.2) for s in range(0, 35, 5)])
    assert e.kinds["anomaly"].live is not None
    # 0.9 is below threshold but above threshold × 0.8: the alert stays open indefinitely
    assert feed(e, [score(s, 0.9) for s in range(35, 1000, 5)]) == []
    # a dip below the band that is shorter than the cool-down, then back in the band: still open
    assert feed(e, [score(1000, 0.1), score(1030, 0.1), score(1035, 0.9), score(1100, 0.1)]) == []
    assert e.kinds["anomaly"].live is not None


def test_band_does_not_reset_a_pending_onset_but_below_does():
    e = TwinAlerts("p1", RULES)
    assert feed(e, [score(0, 1.5), score(10, 0.9), score(20, 0.9)]) == []
    assert [a.event for a in feed(e, [score(30, 1.5)])] == ["opened"]
    e2 = TwinAlerts("p1", RULES)
    assert feed(e2, [score(0, 1.5), score(10, 0.1), score(20, 1.5), score(30, 1.5)]) == []


def test_severity_from_score_ratio_and_upgrades_only():
    e = TwinAlerts("p1", AlertRules(anomaly=KindRule(0, 60), escalate_after_s=0))
    assert feed(e, [score(0, 1.1)])[0].severity == "minor"
    up = feed(e, [score(5, 3.0)])
    assert [(a.event, a.severity, a.version) for a in up] == [("severity", "critical", 2)]
    assert feed(e, [score(10, 1.1)]) == []  # never downgraded while open


def test_explanation_has_top_sensors_window_and_time_to_failure():
    e = TwinAlerts("p1", RULES)
    feed(e, [FailurePrediction("p1", at(0), rul_s=5 * 3600, failure_probability=0.3)])
    recs = [score(s, 2.0, vib=0.7, temp=0.2, rpm=0.05, flow=0.05) for s in range(10, 45, 5)]
    alert = feed(e, recs)[0]
    ev = alert.evidence
    assert [t["sensor"] for t in ev["top_sensors"]] == ["vib", "temp", "rpm"]
    assert ev["top_sensors"][0]["share"] == pytest.approx(0.7)
    assert ev["window"] == {"start": at(10).isoformat(), "end": at(40).isoformat()}
    assert ev["time_to_failure_s"] == 5 * 3600
    assert ev["predicted_failure_at"] == at(5 * 3600).isoformat()
    assert ev["peak_score"] == 2.0 and ev["samples"] == 7
    assert "vib 70%" in alert.summary and "predicted failure in 5.0 h" in alert.summary


def test_maintenance_suppresses_opening_and_escalation():
    e = TwinAlerts("p1", RULES)
    feed(e, [TwinStatus("p1", at(0), maintenance=True)])
    assert feed(e, [score(s, 3.0) for s in range(0, 600, 5)]) == []
    assert e.suppressed > 0
    feed(e, [TwinStatus("p1", at(600), maintenance=False)])
    # after maintenance the minimum duration counts again from the first sample above
    assert feed(e, [score(605, 3.0), score(630, 3.0)]) == []
    assert [a.event for a in feed(e, [score(635, 3.0)])] == ["opened"]


def test_escalates_when_unacknowledged_and_not_after_ack():
    rules = AlertRules(anomaly=KindRule(0, 60), escalate_after_s=600)
    e = TwinAlerts("p1", rules)
    opened = feed(e, [score(0, 1.1)])
    assert opened[0].severity == "minor"
    esc = feed(e, [score(s, 1.1) for s in range(5, 605, 5)])
    assert [(a.event, a.escalation_level, a.severity) for a in esc] == [("escalated", 1, "major")]
    ack = AlertAction(opened[0].alert_id, "p1", "ack", "alice", at(700))
    acked = feed(e, [ack])
    assert [(a.state, a.acked_by, a.acked_at) for a in acked] == [("acknowledged", "alice", at(700))]
    assert feed(e, [score(s, 1.1) for s in range(605, 3000, 5)]) == []


def test_flapping_is_flagged_and_stretches_the_cool_down():
    rules = AlertRules(anomaly=KindRule(0, 10), flap_count=3, flap_window_s=600, escalate_after_s=0)
    e = TwinAlerts("p1", rules)
    events = []
    t = 0
    for _ in range(3):
        events += feed(e, [score(t, 2.0), score(t + 5, 0.1), score(t + 20, 0.1)])
        t += 60
    opened = [a for a in events if a.event == "opened"]
    assert [a.flapping for a in opened] == [False, False, True]
    # the third (flapping) alert did not resolve after the normal 10 s cool-down
    assert e.kinds["anomaly"].live is not None
    assert [a.event for a in feed(e, [score(t + 60, 0.1)])] == ["resolved"]


def test_manual_resolve_and_action_before_alert_is_applied_on_open():
    e = TwinAlerts("p1", RULES)
    future_id = alert_id_for("p1", "anomaly", at(30))
    assert feed(e, [AlertAction(future_id, "p1", "ack", "bob", at(31))]) == []
    out = feed(e, [score(0, 2.0), score(30, 2.0)])
    assert [(a.event, a.state) for a in out] == [("opened", "open"), ("acknowledged", "acknowledged")]
    res = feed(e, [AlertAction(future_id, "p1", "resolve", "bob", at(40))])
    assert [(a.state, a.resolved_by, a.version) for a in res] == [("resolved", "bob", 3)]
    # an action on a closed alert is ignored, and not kept as pending
    assert feed(e, [AlertAction(future_id, "p1", "ack", "eve", at(50))]) == []
    assert future_id not in e.pending_actions


def test_failure_prediction_severity_from_lead_time():
    e = TwinAlerts("p1", AlertRules(escalate_after_s=0))
    assert feed(e, [FailurePrediction("p1", at(0), rul_s=100 * 3600, failure_probability=0.1)]) == []
    a = feed(e, [FailurePrediction("p1", at(10), rul_s=30 * 3600, failure_probability=0.2)])
    assert [(x.kind, x.severity) for x in a] == [("failure", "minor")]
    b = feed(e, [FailurePrediction("p1", at(20), rul_s=3 * 3600, failure_probability=0.4)])
    assert [(x.event, x.severity) for x in b] == [("severity", "critical")]
    # RUL back above 72 h × 1.25 and probability low: resolves after the 600 s cool-down
    ok = [FailurePrediction("p1", at(s), rul_s=200 * 3600, failure_probability=0.01) for s in (30, 700)]
    assert [x.event for x in feed(e, ok)] == ["resolved"]


def test_forecast_breach_within_horizon_opens_with_breaches_in_evidence():
    e = TwinAlerts("p1", AlertRules(escalate_after_s=0))
    far = ForecastPoint("p1", "temp", at(0), at(3600), 70.0, 65.0, 75.0, 90.0, breach_at=None)
    assert feed(e, [far]) == []
    soon = ForecastPoint("p1", "temp", at(60), at(3660), 88.0, 84.0, 93.0, 90.0, breach_at=at(60 + 2 * 3600))
    a = feed(e, [soon])
    assert [(x.kind, x.severity) for x in a] == [("forecast_breach", "critical")]
    assert a[0].evidence["breaches"][0]["sensor"] == "temp"
    assert a[0].evidence["breaches"][0]["lead_s"] == 7200
    # another sensor without breach does not clear it
    other = ForecastPoint("p1", "rpm", at(70), at(3670), 1400.0, 1300.0, 1500.0, 2000.0)
    assert feed(e, [other]) == []


def test_forecast_clears_when_every_sensor_is_clear_even_if_sensors_interleave():
    e = TwinAlerts("p1", AlertRules(forecast_breach=KindRule(0, 60), escalate_after_s=0))
    temp = ForecastPoint("p1", "temp", at(100), at(3700), 88.0, 84.0, 93.0, 90.0, breach_at=at(100 + 3600))
    assert [a.event for a in feed(e, [temp])] == ["opened"]
    # rpm's forecast made earlier than temp's arrives afterwards: not late for its own sensor
    assert feed(e, [ForecastPoint("p1", "rpm", at(90), at(3690), 1.0, limit=2.0)]) == []
    assert e.late_ignored == 0
    clear = [ForecastPoint("p1", "temp", at(s), at(s + 3600), 70.0, 65.0, 75.0, 90.0) for s in (110, 200)]
    assert [a.event for a in feed(e, clear)] == ["resolved"]


def test_desync_records_from_reconciliation():
    event = DesyncEvent("p1", "desync", T0, 7, {"parameters": ["setpoint"], "duration_s": 300.0})
    rec = desync_escalation(encode(event))
    assert rec == DesyncEscalation("p1", T0, {"parameters": ["setpoint"], "duration_s": 300.0})
    assert desync_escalation(encode(DesyncEvent("p1", "command_failed", T0, 8, {"attempts": 3}))) is None
    with pytest.raises(Rejected):
        desync_escalation(b'{"kind":"desync","twin_id":"p1"}')  # no time, no version
    e = TwinAlerts("p1", AlertRules(escalate_after_s=0))
    opened = feed(e, [rec])
    assert [(a.kind, a.severity) for a in opened] == [("desync", "major")]
    assert opened[0].evidence["desync"]["parameters"] == ["setpoint"]
    # a further escalation adds no alert; a person may resolve it
    assert feed(e, [DesyncEscalation("p1", at(100), {"duration_s": 400.0})]) == []
    resolve = AlertAction(opened[0].alert_id, "p1", "resolve", "ops", at(200))
    assert [(a.event, a.resolved_by) for a in feed(e, [resolve])] == [("resolved", "ops")]


def test_a_desync_alert_clears_when_the_twin_is_synchronized_again():
    rec = desync_escalation(encode(DesyncEvent("p1", "resynced", at(60), 9, {"duration_s": 360.0})))
    assert rec == DesyncEscalation("p1", at(60), {"duration_s": 360.0}, in_sync=True)
    e = TwinAlerts("p1", AlertRules(escalate_after_s=0))
    assert feed(e, [rec]) == []  # no alert open: nothing to clear
    (opened,) = feed(e, [DesyncEscalation("p1", at(100), {"parameters": ["setpoint"]})])
    closed = feed(e, [DesyncEscalation("p1", at(160), in_sync=True)])
    assert [(a.alert_id, a.event, a.resolved_by) for a in closed] == [(opened.alert_id, "resolved", "auto")]


def test_late_records_are_ignored_and_counted():
    e = TwinAlerts("p1", RULES)
    feed(e, [score(100, 0.1)])
    assert feed(e, [score(50, 5.0)]) == []
    assert e.late_ignored == 1


def test_replay_gives_identical_alerts():
    recs = [score(s, 2.0 if 60 <= s < 300 else 0.1) for s in range(0, 600, 5)]

    def run():
        state, out = None, []
        for r in recs:
            state, new = step(state, r, RULES)
            out += new
        return out

    first, second = run(), run()
    assert first == second and len(first) == 2
