"""ISA-18.2 alarm states in the alert lifecycle: ack × active/cleared, shelving, suppression,
out of service, standing alarms, re-annunciation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from operators.alerts.lifecycle import TwinAlerts
from operators.alerts.ordering import OrderedTwinAlerts
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import AlertAction, AnomalyScore, ParentAlarm, TwinStatus, decode, encode

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
RULES = AlertRules(anomaly=KindRule(min_duration_s=0, cool_down_s=30), escalate_after_s=0)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def score(s: float, value: float) -> AnomalyScore:
    return AnomalyScore("p1", at(s), value, 1.0, value >= 1.0, {"temp": 1.0})


def act(s: float, alert_id: str, action: str, **kw) -> AlertAction:
    return AlertAction(alert_id=alert_id, twin_id="p1", action=action, by="ann", ts=at(s), **kw)  # type: ignore[arg-type]


def feed(engine: TwinAlerts, records) -> list:
    out = []
    for r in records:
        out += engine.apply(r)
    return out


def opened(engine: TwinAlerts) -> str:
    (alert,) = feed(engine, [score(0, 2.0)])
    assert (alert.event, alert.isa_state, alert.condition) == ("opened", "unack_active", "active")
    return alert.alert_id


def test_ack_then_clear_returns_to_normal():
    e = TwinAlerts("p1", RULES)
    aid = opened(e)
    (acked,) = feed(e, [act(5, aid, "ack")])
    assert (acked.state, acked.isa_state) == ("acknowledged", "ack_active")
    (done,) = feed(e, [score(s, 0.1) for s in range(10, 50, 5)])
    assert (done.state, done.isa_state, done.resolved_by) == ("resolved", "normal", "auto")


def test_latched_unacknowledged_clear_waits_for_ack():
    e = TwinAlerts("p1", AlertRules(anomaly=KindRule(0, 30), escalate_after_s=0, latch_unacknowledged=True))
    aid = opened(e)
    (cleared,) = feed(e, [score(s, 0.1) for s in range(10, 100, 5)])
    assert (cleared.event, cleared.state, cleared.isa_state) == ("cleared", "open", "unack_cleared")
    assert e.kinds["anomaly"].live is not None  # RTNUN: still there until someone acknowledges it
    (done,) = feed(e, [act(101, aid, "ack")])
    assert (done.state, done.isa_state, done.resolved_by) == ("resolved", "normal", "ann")


def test_latched_alarm_that_returns_is_active_again():
    e = TwinAlerts("p1", AlertRules(anomaly=KindRule(0, 30), escalate_after_s=0, latch_unacknowledged=True))
    opened(e)
    feed(e, [score(s, 0.1) for s in range(10, 100, 5)])
    (again,) = feed(e, [score(105, 2.0)])
    assert (again.event, again.isa_state) == ("reactivated", "unack_active")


def test_shelving_hides_the_alarm_and_expiry_annunciates_it_again():
    rules = AlertRules(anomaly=KindRule(0, 30), escalate_after_s=60)
    e = TwinAlerts("p1", rules)
    aid = opened(e)
    feed(e, [act(1, aid, "ack")])
    (shelved,) = feed(e, [act(2, aid, "shelve", until=at(300), note="sensor being replaced")])
    assert (shelved.isa_state, shelved.shelved_until, shelved.shelved_by, shelved.shelve_reason) == (
        "shelved",
        at(300),
        "ann",
        "sensor being replaced",
    )
    # while shelved: no escalation even though nobody acknowledges the reopened alarm
    assert feed(e, [score(s, 2.0) for s in range(10, 300, 10)]) == []
    assert e.next_due() == at(300)
    # the shelf expires with the condition still active: unacknowledged again, counted as reopened
    (back,) = feed(e, [score(300, 2.0)])
    assert (back.event, back.state, back.isa_state, back.reopened, back.acked_by) == (
        "unshelved",
        "open",
        "unack_active",
        1,
        None,
    )
    assert back.evidence["actor"] == "expiry"
    # escalation counts from the re-annunciation, not from the opening
    assert feed(e, [score(350, 2.0)]) == []
    assert [a.event for a in feed(e, [score(360, 2.0)])] == ["escalated"]


def test_shelf_expires_on_a_clock_tick_without_data_and_is_capped():
    e = TwinAlerts("p1", AlertRules(anomaly=KindRule(0, 30), escalate_after_s=0, max_shelve_s=100))
    aid = opened(e)
    (shelved,) = feed(e, [act(1, aid, "shelve", until=at(10_000))])
    assert shelved.shelved_until == at(101)  # at most max_shelve_s
    assert e.advance(at(50)) == []
    (back,) = e.advance(at(101))
    assert (back.event, back.isa_state) == ("unshelved", "unack_active")


def test_manual_unshelve_and_clear_while_shelved():
    e = TwinAlerts("p1", RULES)
    aid = opened(e)
    feed(e, [act(1, aid, "shelve", until=at(500))])
    (un,) = feed(e, [act(2, aid, "unshelve")])
    assert (un.event, un.isa_state, un.evidence["actor"]) == ("unshelved", "unack_active", "ann")
    feed(e, [act(3, aid, "shelve", until=at(500))])
    (done,) = feed(e, [score(s, 0.1) for s in range(10, 60, 5)])  # cleared while shelved: normal
    assert (done.isa_state, done.shelved_until) == ("normal", None)
    assert e.next_due() is None


def test_maintenance_suppresses_live_alarms_and_opens_nothing():
    e = TwinAlerts("p1", AlertRules(anomaly=KindRule(0, 30), escalate_after_s=60))
    opened(e)
    (sup,) = feed(e, [TwinStatus("p1", at(1), True)])
    assert (sup.event, sup.isa_state, sup.suppressed_by) == ("suppressed", "suppressed", "maintenance")
    assert feed(e, [score(s, 2.0) for s in range(10, 200, 10)]) == []  # no escalation
    (back,) = feed(e, [TwinStatus("p1", at(200), False)])
    assert (back.event, back.isa_state, back.suppressed_by) == ("unsuppressed", "unack_active", None)


def test_parent_alarm_suppresses_the_childs_alarms_by_design():
    e = TwinAlerts("p1", RULES)
    assert feed(e, [ParentAlarm("p1", at(0), "line-1", "al-parent", True)]) == []
    (child,) = feed(e, [score(1, 2.0)])
    assert (child.event, child.isa_state, child.suppressed_by) == ("opened", "suppressed", "parent:line-1")
    # another alarm of the parent clearing does not lift it; the one that suppresses it does
    assert feed(e, [ParentAlarm("p1", at(2), "line-1", "al-other", False)]) == []
    (free,) = feed(e, [ParentAlarm("p1", at(3), "line-1", "al-parent", False)])
    assert (free.event, free.isa_state) == ("unsuppressed", "unack_active")


def test_out_of_service_alarm_is_not_raised_until_returned_to_service():
    e = TwinAlerts("p1", RULES)
    aid = opened(e)
    (oos,) = feed(e, [act(1, aid, "out_of_service")])
    assert oos.isa_state == "out_of_service"
    feed(e, [score(s, 0.1) for s in range(10, 60, 5)])  # resolves
    assert feed(e, [score(s, 2.0) for s in range(60, 100, 5)]) == []  # out of service: nothing opens
    assert feed(e, [act(100, aid, "in_service")]) == []
    (again,) = feed(e, [score(105, 2.0)])
    assert (again.event, again.isa_state) == ("opened", "unack_active")


def test_standing_alarm_is_marked_once():
    e = TwinAlerts("p1", AlertRules(anomaly=KindRule(0, 30), escalate_after_s=0, standing_after_s=100))
    opened(e)
    assert feed(e, [score(50, 2.0)]) == []
    (st,) = feed(e, [score(100, 2.0)])
    assert (st.event, st.standing) == ("standing", True)
    assert feed(e, [score(150, 2.0)]) == []


def test_ordered_lifecycle_ticks_flush_held_records_first():
    o = OrderedTwinAlerts.new("p1", AlertRules(anomaly=KindRule(0, 30), escalate_after_s=0, reorder_window_s=10))
    assert o.push(score(0, 2.0)) == []  # held for the reorder window
    out = o.advance(at(5))
    assert [a.event for a in out] == ["opened"]


def test_actions_and_parent_records_round_trip():
    a = act(1, "al-1", "shelve", until=at(60), note="why")
    assert decode(AlertAction, encode(a)) == a
    p = ParentAlarm("p1", at(0), "line-1", "al-2", True)
    assert decode(ParentAlarm, encode(p)) == p
