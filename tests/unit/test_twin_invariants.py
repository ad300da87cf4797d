"""Property: whatever the event sequence, the reconciler keeps its invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.records.twin import Ack, AckEvent, Command, DesiredEvent, DesiredUpdate, DesyncEvent, Reported
from operators.twin.reconcile import Reconciler
from operators.twin.state import StateChange, Status, TwinState
from operators.twin.sync_strategy import TwinPolicy
from tests.twin_helpers import at

POLICY = TwinPolicy.model_validate(
    {
        "defaults": {"max_desync_time_s": 20, "hold_time_s": 1.0},
        "twins": {
            "t1": {
                "parameters": {
                    "a": {"strategy": "digital_wins", "tolerance": 1.0, "critical": True, "ack_timeout_s": 3},
                    "b": {"strategy": "merge", "tolerance": 0.5, "max_attempts": 2, "ack_timeout_s": 2},
                    "c": {"strategy": "physical_wins", "tolerance": 0.1},
                }
            }
        },
    }
)

params = st.sampled_from(["a", "b", "c"])
values = st.floats(min_value=-50, max_value=50, allow_nan=False)
reading = st.builds(
    lambda dt, vals, src, q: ("reading", dt, vals, src, q),
    st.floats(0, 3),
    st.dictionaries(params, values, min_size=1),
    st.sampled_from(["mqtt", "mqtt", "whatif"]),
    st.sampled_from([0, 0, 0, 2]),
)
desired = st.builds(
    lambda dt, vals, mode, stale: ("desired", dt, vals, mode, stale),
    st.floats(0, 3),
    st.dictionaries(params, values, max_size=2),
    st.sampled_from([None, None, None, "maintenance", "simulating", "normal"]),
    st.sampled_from([None, "current", "stale"]),
)
ack = st.builds(
    lambda dt, status: ("ack", dt, status),
    st.floats(0, 3),
    st.sampled_from(["applied", "rejected", "failed", "expired", "superseded"]),
)
tick = st.builds(lambda dt: ("tick", dt), st.floats(0, 10))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(reading, desired, ack, tick), min_size=1, max_size=60))
def test_invariants_hold_for_any_event_sequence(script: list[tuple]) -> None:
    r = Reconciler(POLICY)
    state = TwinState("t1")
    t = 0.0
    issued: list[Command] = []
    whatif: set[float] = set()
    for step in script:
        kind, dt = step[0], step[1]
        t += dt
        before, desired_before = state.version, state.desired_version
        if kind == "reading":
            _, _, vals, src, quality = step
            if src == "whatif":
                whatif.update(vals.values())
            event = Reported(at(t), int(t * 1000), src, vals, quality)
        elif kind == "desired":
            _, _, vals, mode, expect = step
            if not vals and mode is None:
                continue
            # expected_version is the gate's business (operators/twin/desired_gate.py): not checked here.
            expected = {None: None, "current": state.desired_version, "stale": state.desired_version + 1}[expect]
            event = DesiredEvent(DesiredUpdate("t1", vals, expected_version=expected, mode=mode), at(t))
        elif kind == "ack":
            if not issued:
                continue
            event = AckEvent(Ack(issued[-1].command_id, step[2]), at(t))
        else:
            event = at(t)
        out = r.apply(state, event)
        changes = [o for o in out if isinstance(o, StateChange)]
        if kind != "desired":
            # the desired version moves only with the desired document: reported values, acks and time
            # never move it, except merge letting the machine override a desired value
            fields_ = changes[0].change["fields"] if changes else {}
            assert state.desired_version == desired_before or any(f.startswith("desired.") for f in fields_)
            assert "mode" not in fields_
        # exactly one new version per state change, never a gap, never a version without a record
        assert len(changes) <= 1
        assert state.version == before + len(changes)
        if changes:
            assert changes[0].version == state.version and changes[0].change["fields"]
            snap = changes[0].snapshot
            assert snap["status"] in {s.value for s in Status}
            assert snap["learn"] == (snap["mode"] == "normal")
            if snap["mode"] != "normal":
                assert snap["status"] == snap["mode"]
        assert 0.0 <= state.consistency_score <= 1.0
        new_commands = [o for o in out if isinstance(o, Command)]
        if state.mode != "normal":
            assert new_commands == []  # commands are held in maintenance and simulating
        assert all(c.parameter in ("a", "b") for c in new_commands)  # never for physical_wins
        issued += new_commands
        for alert in (o for o in out if isinstance(o, DesyncEvent)):
            if alert.kind == "desync":
                assert state.mode == "normal"
        # what-if values never become reported values (unless the same number was also measured)
        measured = {v for s in script if s[0] == "reading" and s[3] != "whatif" for v in s[2].values()}
        assert all(v in measured or v not in whatif for v, _ts in state.reported.values())
    assert len({c.command_id for c in issued}) == len(issued)
