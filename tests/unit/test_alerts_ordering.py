"""The alert lifecycle does not depend on how records of different topics interleave."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta, timezone

from flows.snapshots import from_snapshot, to_snapshot
from operators.alerts.episode import alert_id_for
from operators.alerts.ordering import _SNAPSHOT_FIELDS, OrderedTwinAlerts, step
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import AlertAction, AnomalyScore, FailurePrediction, ForecastPoint, TwinStatus

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
WINDOW = 30.0
RULES = AlertRules(anomaly=KindRule(min_duration_s=30, cool_down_s=60), escalate_after_s=0, reorder_window_s=WINDOW)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def score(s: float, value: float, twin: str = "p1") -> AnomalyScore:
    return AnomalyScore(twin, at(s), value, 1.0, value >= 1.0, {"temp": 0.6, "rpm": 0.4})


def run(records, rules: AlertRules = RULES) -> list:
    """Feed records through the flow's step, then flush (end of input)."""
    state: OrderedTwinAlerts | None = None
    out: list = []
    for r in records:
        state, new = step(state, r, rules)
        out += new
    assert state is not None
    return out + state.flush()


def topics(opened_at: float = 90):
    """Per-topic streams, each in its own (Kafka partition) order."""
    data = [score(s, 2.0 if 60 <= s < 300 else 0.1) for s in range(0, 600, 5)]
    alert_id = alert_id_for("p1", "anomaly", at(opened_at))
    actions = [AlertAction(alert_id, "p1", "ack", "alice", at(opened_at + 12))]
    # maintenance from 602 to 800: a second fault in it must not open anything
    data += [score(s, 3.0) for s in range(600, 700, 5)]
    status = [TwinStatus("p1", at(602), True, "tech"), TwinStatus("p1", at(800), False, "tech")]
    data += [score(s, 0.1) for s in range(700, 900, 5)]
    return data, actions, status


def merge(streams, offsets: list[float]) -> list:
    """Interleave streams keeping each one's order: stream i is read as if delayed by offsets[i] s."""
    tagged = [
        ((r.ts + timedelta(seconds=off)), i, j, r)
        for i, (st, off) in enumerate(zip(streams, offsets, strict=True))
        for j, r in enumerate(st)
    ]
    return [r for *_, r in sorted(tagged, key=lambda t: t[:3])]


def test_two_interleavings_within_the_window_give_identical_versions():
    data, actions, status = topics()
    # live: actions and status arrive late (up to 25 s after their time); replay: early (25 s before)
    live = merge([data, actions, status], [0, 25, 20])
    replay = merge([data, actions, status], [0, -25, -20])
    assert live != replay
    a, b = run(live), run(replay)
    assert a == b
    assert [(x.event, x.state, x.version) for x in a] == [
        ("opened", "open", 1),
        ("acknowledged", "acknowledged", 2),
        ("resolved", "resolved", 3),
    ]
    assert a[1].acked_by == "alice" and a[2].resolved_by == "auto"


def test_random_interleavings_within_the_window_match_event_time_order():
    data, actions, status = topics()
    expected = run(sorted(data + actions + status, key=lambda r: r.ts))
    rng = random.Random(7)
    for _ in range(20):
        offsets = [0.0] + [rng.uniform(-WINDOW + 1, WINDOW - 1) for _ in range(2)]
        assert run(merge([data, actions, status], offsets)) == expected


def test_without_the_window_arrival_order_changes_the_result():
    """The control: applied in arrival order, the late ack misses its alert."""
    data, actions, status = topics()
    rules = AlertRules(anomaly=KindRule(min_duration_s=30, cool_down_s=60), escalate_after_s=0, reorder_window_s=0)
    assert run(merge([data, actions, status], [0, 25, 20]), rules) != run(
        merge([data, actions, status], [0, -25, -20]), rules
    )


def test_maintenance_applies_from_its_event_time_even_if_read_after_the_data():
    fault = [score(s, 2.0) for s in range(0, 120, 5)]
    maint = TwinStatus("p1", at(-1), True, "tech")
    assert run([*fault, maint], AlertRules(anomaly=KindRule(30, 60), reorder_window_s=200)) == []
    assert [x.event for x in run([*fault, maint], AlertRules(anomaly=KindRule(30, 60), reorder_window_s=10))][:1] == [
        "opened"
    ]


def test_records_later_than_the_window_are_applied_not_dropped():
    state = OrderedTwinAlerts.new("p1", RULES)
    out = []
    for s in range(0, 200, 5):
        out += state.push(score(s, 2.0))
    assert [x.event for x in out] == ["opened"]
    acked = state.push(AlertAction(out[0].alert_id, "p1", "ack", "bob", at(40)))
    assert [(x.event, x.acked_by) for x in acked] == [("acknowledged", "bob")]
    assert state.late_applied == 1


def test_records_of_the_same_time_apply_status_then_data_then_actions():
    e = OrderedTwinAlerts.new("p1", AlertRules(anomaly=KindRule(0, 60), escalate_after_s=0))
    alert_id = alert_id_for("p1", "anomaly", at(10))
    for r in [
        AlertAction(alert_id, "p1", "ack", "bob", at(10)),
        score(10, 2.0),
        TwinStatus("p1", at(0), False),
    ]:
        assert e.push(r) == []
    assert [(x.event, x.version) for x in e.flush()] == [("opened", 1), ("acknowledged", 2)]


def test_pending_action_expires_after_its_ttl_in_event_time():
    rules = AlertRules(anomaly=KindRule(0, 60), escalate_after_s=0, pending_action_ttl_s=100, reorder_window_s=0)
    never = alert_id_for("p1", "anomaly", at(999))
    out = run([AlertAction(never, "p1", "ack", "bob", at(0)), score(50, 0.1), score(150, 0.1)], rules)
    assert out == []
    state, _ = step(None, AlertAction(never, "p1", "ack", "bob", at(0)), rules)
    state.push(score(50, 0.1))
    assert never in state.alerts.pending_actions
    state.push(score(150, 0.1))
    assert never not in state.alerts.pending_actions and state.alerts.actions_expired == 1


def test_held_records_are_bounded():
    rules = AlertRules(anomaly=KindRule(0, 60), reorder_window_s=1e9, reorder_max_held=10)
    state = OrderedTwinAlerts.new("p1", rules)
    for s in range(0, 100, 5):
        state.push(score(s, 0.1))
    assert len(state.held) == 10


def test_actions_and_status_do_not_move_the_clock():
    """They carry wall-clock times from the CLI: a far-future one must not release the data."""
    state = OrderedTwinAlerts.new("p1", RULES)
    assert state.push(TwinStatus("p1", at(10_000), False, "tech")) == []
    for s in range(0, 20, 5):
        assert state.push(score(s, 2.0)) == []
    assert len(state.held) == 5 and state.applied_until is None


def test_held_records_are_bounded_before_any_data_too():
    state = OrderedTwinAlerts.new("p1", AlertRules(reorder_max_held=3))
    for s in range(5):
        state.push(TwinStatus("p1", at(s), s % 2 == 0, "tech"))
    assert len(state.held) == 3 and state.alerts.maintenance is False  # the one at 1 s was applied


def test_a_twin_resumed_from_snapshots_gives_the_versions_of_an_uninterrupted_run():
    """The held records pickle in a compact form (operators.alerts.held_state): a run snapshotted every
    7 records (each snapshot loads as the state it was taken of) and resumed from every third gives the
    same alert versions, also for a fault reported at another UTC offset (the offset is part of the
    alert's id) and for forecasts, failure predictions, status changes and actions held beside the
    scores."""
    plus_one = timezone(timedelta(hours=1))
    data, actions, status = topics()
    data += [AnomalyScore("p1", at(s).astimezone(plus_one), 3.0, 1.0, True, {"temp": 1.0}) for s in range(900, 1000, 5)]
    data += [
        ForecastPoint("p1", "temp", at(s), at(s + 600), 80.0, 70.0, 90.0, 85.0, at(s + 300) if 200 <= s < 500 else None)
        for s in range(0, 1000, 20)
    ]
    data += [FailurePrediction("p1", at(s), 3600.0 * 24, 0.7, model_version=1) for s in range(0, 1000, 50)]
    live = merge([data, actions, status], [0, 25, 20])
    expected = run(live)
    assert {x.kind for x in expected} >= {"anomaly", "failure", "forecast_breach"}
    assert any(x.opened_at.tzinfo == plus_one for x in expected)

    for load in (from_snapshot, pickle.loads):  # also by plain pickle, as an earlier version does
        state: OrderedTwinAlerts | None = None
        out: list = []
        for i, r in enumerate(live):
            state, new = step(state, r, RULES)
            out += new
            if i % 7 == 0:  # a snapshot; the twin goes on, and every third time resumes from it
                back = load(to_snapshot(state))
                assert (sorted(back.held), back.alerts) == (sorted(state.held), state.alerts)
                if i % 21 == 0:
                    state = back
        assert state is not None and state.held
        assert set(state.packed) <= {arrival for _, _, arrival, _ in state.held}  # released records' bytes go
        assert out + state.flush() == expected and not state.packed


def _lagging(shelve_arrival: int, lag: timedelta = timedelta(hours=1)) -> list[tuple]:
    """A twin alerting whose data run ``lag`` behind the wall clock (one reading a second of both),
    shelved for 60 s at wall second 100; the shelve is read after ``shelve_arrival`` readings.
    (record, wall time in Unix ms) pairs."""
    wall0 = int((T0 + lag).timestamp() * 1000)
    data = [(score(s, 2.0), wall0 + s * 1000) for s in range(0, 300)]
    aid = alert_id_for("p1", "anomaly", at(0))
    shelve = AlertAction(aid, "p1", "shelve", "alice", at(100) + lag, "probe swap", at(160) + lag)
    return [*data[:shelve_arrival], (shelve, wall0 + 100_000), *data[shelve_arrival:]]


def _run_walls(items: list[tuple], rules: AlertRules, live: bool = True) -> list:
    state: OrderedTwinAlerts | None = None
    out: list = []
    for rec, wall_ms in items:
        state, new = step(state, rec, rules, live=live, wall_ms=wall_ms)
        out += new
        state = from_snapshot(to_snapshot(state))  # every record through a snapshot: wall times kept
    assert state is not None
    return out + state.flush()


def test_a_shelf_expires_on_the_records_wall_clock_not_the_lagging_data_clock():
    """The data an hour behind: the data clock would keep the 60 s shelf for an hour and a minute."""
    rules = AlertRules(anomaly=KindRule(min_duration_s=0, cool_down_s=600), escalate_after_s=0, reorder_window_s=5)
    got = _run_walls(_lagging(101), rules)
    events = [(a.event, a.updated_at) for a in got]
    assert [e for e, _ in events] == ["opened", "shelved", "unshelved"], events
    assert events[2][1] == at(160), "expired at the reading written 60 s after the shelving"
    assert got[1].shelved_until == at(160) + timedelta(hours=1), "the wall time asked for"
    # the shelve read earlier or later: it expires at the same record
    for arrival in (96, 104):
        again = _run_walls(_lagging(arrival), rules)
        assert [(a.event, a.version, a.updated_at) for a in again][::2] == [(a.event, a.version, a.updated_at)
                                                                           for a in got][::2]  # fmt: skip


def test_a_replay_expires_a_shelf_at_the_same_record_in_any_read_order_the_window_covers():
    rules = AlertRules(anomaly=KindRule(min_duration_s=0, cool_down_s=600), escalate_after_s=0, reorder_window_s=5)
    runs = [_run_walls(_lagging(arrival, timedelta(0)), rules, live=False) for arrival in (96, 101, 104)]
    assert [a.event for a in runs[0]] == ["opened", "shelved", "unshelved"] and runs[0][2].updated_at == at(160)
    assert runs[0] == runs[1] == runs[2]


def test_a_snapshot_without_wall_times_resumes():
    state, _ = step(None, score(0, 2.0), RULES, wall_ms=1)
    loaded = pickle.loads(pickle.dumps(state))
    snap = {name: getattr(loaded, name) for name in _SNAPSHOT_FIELDS if name != "walls"}  # before wall times
    old = OrderedTwinAlerts.__new__(OrderedTwinAlerts)
    old.__setstate__((None, snap))
    assert old.walls == {} and old.flush() == state.flush()
