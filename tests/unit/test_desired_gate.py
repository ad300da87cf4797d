"""The desired-state gate's decisions (operators/twin/desired_gate.py, operators/security/request_auth.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from operators.records.alerts import TwinStatus
from operators.records.twin import Command, DesiredEvent, DesiredOutcome, DesiredUpdate, Reported
from operators.security.authorization import Policy
from operators.security.request_auth import Freshness, Subjects, new_private_key, public_key_text, sign
from operators.twin.desired_gate import DesiredGate, GateConfig, MemoryStore
from operators.twin.event_windows import WindowSpec
from operators.twin.processor import TwinProcessor
from operators.twin.reconcile import Reconciler
from operators.twin.state import TwinState
from operators.twin.sync_strategy import TwinPolicy

NOW = datetime(2026, 11, 25, 8, tzinfo=UTC)
ANN, GW, EVE = new_private_key(), new_private_key(), new_private_key()
SUBJECTS = Subjects.from_dict(
    {
        "subject": {
            "ann": {"roles": ["operator"], "public_keys": [public_key_text(ANN)]},
            "bob": {"roles": ["guest"], "public_keys": []},
            "gw": {"roles": ["gateway"], "public_keys": [public_key_text(GW)], "act_for": ["ann", "bob"]},
        }
    }
)
POLICY = Policy.from_dict(
    {
        "rule": [
            {
                "name": "ops",
                "subject": {"roles": "operator"},
                "parameters": {"speed": {"min": 0, "max": 3000}, "flow": {"min": 0, "max": 10}},
                "modes": ["maintenance", "normal"],
            }
        ]
    }
)
TP = TwinPolicy.model_validate(
    {
        "defaults": {"strategy": "digital_wins", "hold_time_s": 0},
        "twins": {"p1": {"parameters": {"flow": {"strategy": "physical_wins"}}}},
    }
)
_n = iter(range(10**6))


def event(key=ANN, *, subject="ann", at=NOW, pos=None, rid=None, **fields) -> DesiredEvent:
    req = {"twin_id": "p1", "request_id": rid or f"req-{next(_n):06d}", "issued_at": at.isoformat(), "subject": subject}
    req.update(fields)
    signed, sig = sign(req, key)
    upd = DesiredUpdate(
        "p1",
        req.get("values", {}),
        expected_version=req.get("expected_version"),
        issued_at=at,
        mode=req.get("mode"),
        request_id=req["request_id"],
        subject=subject,
        on_behalf_of=req.get("on_behalf_of"),
    )
    return DesiredEvent(upd, at, signed, sig, pos or ("twin.desired", 0, next(_n)))


def state() -> TwinState:
    return TwinState("p1", version=3, reported={"speed": (1000.0, NOW), "flow": (5.0, NOW)})


def judge(ev: DesiredEvent, st: TwinState | None = None, store=None, **cfg):
    """``ev`` judged as a batch of its own (and committed)."""
    gate = DesiredGate(GateConfig(SUBJECTS, POLICY, None, TP.type_of, **cfg), store or MemoryStore())
    verdict = gate.judge(st or state(), ev, TP.rules_for("p1"), NOW)
    gate.commit()
    return verdict


@pytest.mark.parametrize(
    ("ev", "reason"),
    [
        (event(values={"speed": 1200.0}), "allowed"),
        (event(EVE, values={"speed": 1200.0}), "bad_signature"),
        (event(values={"speed": 1200.0}, subject="zed"), "unknown_subject"),
        (event(values={"speed": 1200.0}, at=NOW - timedelta(seconds=301)), "expired"),
        (event(values={"speed": 1200.0}, at=NOW + timedelta(seconds=61)), "issued_in_future"),
        (event(values={"speed": 9000.0}), "out_of_range"),
        (event(values={"valve": 1.0}), "parameter_not_allowed"),
        (event(values={"flow": 1.0}), "physical_wins"),
        (event(values={"speed": 1200.0}, expected_version=3), "stale_version"),
        (event(values={"speed": 1200.0}, expected_version=0), "allowed"),
        (event(mode="maintenance"), "allowed"),
        (event(mode="simulating"), "mode_not_allowed"),
        (event(GW, subject="gw", on_behalf_of="ann", values={"speed": 1.0}), "allowed"),
        (event(GW, subject="gw", on_behalf_of="bob", values={"speed": 1.0}), "no_matching_rule"),
        (event(GW, subject="gw", on_behalf_of="carl", values={"speed": 1.0}), "not_delegated"),
        (event(ANN, subject="ann", on_behalf_of="bob", values={"speed": 1.0}), "not_delegated"),
    ],
)
def test_decisions(ev: DesiredEvent, reason: str) -> None:
    v = judge(ev)
    assert v.reason == reason, v.detail
    assert v.allowed == (reason == "allowed")


def test_gateway_acts_for_the_user_and_the_audit_names_both() -> None:
    v = judge(event(GW, subject="gw", on_behalf_of="ann", values={"speed": 1.0}))
    assert (v.actor, v.via, v.new["via"]) == ("ann", "gw", "gw")


def test_unsigned_unknown_twin_and_unknown_parameter() -> None:
    bare = DesiredEvent(DesiredUpdate("p1", {"speed": 1.0}, author="ann"), NOW, None, None, ("twin.desired", 0, 1))
    v = judge(bare)
    assert (v.reason, v.actor, v.request_id) == ("unsigned", "anonymous", "unsigned:twin.desired:0:1")
    assert judge(event(values={"speed": 1.0}), TwinState("p1")).reason == "unknown_twin"  # never seen
    st = TwinState("p1", version=3, reported={"temp": (1.0, NOW)})
    policy = Policy.from_dict({"rule": [{"name": "all", "subject": {"roles": "operator"}, "parameters": {"*": {}}}]})
    gate = DesiredGate(GateConfig(SUBJECTS, policy, None, TP.type_of), MemoryStore())
    assert gate.judge(st, event(values={"speed": 1.0}), TP.rules_for("p1"), NOW).reason == "unknown_parameter"


def test_a_record_read_again_gets_the_same_verdict_a_copy_is_a_replay() -> None:
    store = MemoryStore()
    ev = event(values={"speed": 1200.0}, pos=("twin.desired", 0, 5))
    first = judge(ev, store=store)
    again = judge(ev, store=store, freshness=Freshness(timedelta(0)))  # too old now, but decided before
    assert again.allowed and again.repeated and len(store.log) == 1  # nothing new recorded
    copy = DesiredEvent(ev.update, ev.at, ev.signed, ev.signature, ("twin.desired", 0, 9))
    replay = judge(copy, store=store)
    assert (replay.allowed, replay.reason, first.allowed) == (False, "replayed_request", True)
    assert len(store.log) == 2


def test_a_batch_is_recorded_in_one_commit_in_order_a_copy_within_it_is_a_replay() -> None:
    store = MemoryStore()
    gate = DesiredGate(GateConfig(SUBJECTS, POLICY, None, TP.type_of), store)
    good = event(values={"speed": 1200.0})
    batch = [
        good,
        event(values={"speed": 9000.0}),  # out of range
        DesiredEvent(good.update, good.at, good.signed, good.signature, ("twin.desired", 0, 10**7)),  # a copy
        event(EVE, values={"speed": 1.0}, rid=good.update.request_id),  # forged with its id: claims nothing
        event(values={"speed": 1300.0}),
    ]
    gate.recall(batch)
    verdicts = [gate.judge(state(), ev, TP.rules_for("p1"), NOW) for ev in batch]
    assert [v.reason for v in verdicts] == [
        "allowed", "out_of_range", "replayed_request", "bad_signature", "allowed"
    ]  # fmt: skip
    assert store.log == [] and gate.commit() == 5
    assert (store.commits, store.log) == (1, verdicts)
    # read again (a restart): the same verdicts, nothing new recorded
    again = [gate.judge(state(), ev, TP.rules_for("p1"), NOW) for ev in batch]
    assert [v.reason for v in again] == [v.reason for v in verdicts] and all(v.repeated for v in again)
    assert gate.commit() == 0 and store.commits == 1


def test_processor_gates_then_reconciles_and_publishes_the_mode() -> None:
    store = MemoryStore()
    proc = TwinProcessor(TP, WindowSpec(), DesiredGate(GateConfig(SUBJECTS, POLICY, None, TP.type_of), store))
    rt = proc.new("p1")
    proc.process(rt, Reported(NOW, 1, "mqtt", {"speed": 1000.0}))
    out = proc.process(rt, event(values={"speed": 1200.0}, at=datetime.now(UTC)))
    outcome = next(o for o in out if isinstance(o, DesiredOutcome))
    assert outcome.decision == "applied" and outcome.commands == [c.command_id for c in out if isinstance(c, Command)]
    assert rt.state.desired_version == 1 and rt.state.desired["speed"][2] == "ann"
    denied = proc.process(rt, event(EVE, values={"speed": 5.0}, at=datetime.now(UTC)))
    assert [type(o).__name__ for o in denied] == ["DesiredOutcome"] and denied[0].reason == "bad_signature"
    out = proc.process(rt, event(mode="maintenance", at=datetime.now(UTC)))
    (status,) = [o for o in out if isinstance(o, TwinStatus)]
    assert (status.mode, status.maintenance, status.by, status.learn) == ("maintenance", True, "ann", False)
    # a record this state already processed (read again after a restart) is skipped entirely
    old = DesiredEvent(DesiredUpdate("p1", {"speed": 1.0}), NOW, None, None, ("twin.desired", 0, 0))
    assert proc.process(rt, old) == []


def test_measurement_noise_makes_no_version_setpoints_are_exact() -> None:
    r = Reconciler(TwinPolicy())  # built-in defaults: 1 % for measurements
    st = TwinState("p1")
    versions = []
    for i, v in enumerate([60.0, 60.2, 59.9, 60.3, 61.0, 60.95]):
        r.apply(st, Reported(NOW + timedelta(seconds=i), i, "mqtt", {"temp": v}))
        versions.append(st.version)
    assert versions == [1, 1, 1, 1, 2, 2]  # 61.0 is > 1 % away from 60.0, the others are noise
    assert st.desired_version == 0
