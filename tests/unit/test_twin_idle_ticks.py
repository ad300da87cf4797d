"""A twin that goes silent still times out its commands and escalates (clock ticks from the flow)."""

from __future__ import annotations

from datetime import timedelta

from flows.twin import TwinLogic
from operators.records.twin import Command, DesyncEvent
from operators.twin.event_windows import WindowSpec
from operators.twin.processor import TwinProcessor
from operators.twin.state import CommandStatus
from operators.twin.sync_strategy import TwinPolicy
from tests.twin_helpers import Run, at, desired, reading, reconciler

RULES = {
    "strategy": "digital_wins",
    "tolerance": 1.0,
    "ack_timeout_s": 5,
    "max_attempts": 1,
    "hold_time_s": 2,
}


def test_next_due_is_the_earliest_deadline() -> None:
    run = Run(reconciler(**RULES))
    assert run.r.next_due(run.state) is None
    run(reading(0, 100.0))
    run.r.rules("t1").max_desync_time_s = 30
    run(desired(1, 120.0))
    assert run.r.next_due(run.state) == at(6)  # the ack deadline
    run(at(6))  # timed out, attempts exhausted
    assert run.state.params["speed"].command.status is CommandStatus.GIVEN_UP
    assert run.r.next_due(run.state) == at(31)  # escalation: desynced since 1 s, max 30 s
    run(reading(32, 100.5))  # deviation 19.5: still in conflict, escalated; nothing more is due
    assert run.r.next_due(run.state) is None


def test_hold_time_expiry_is_due() -> None:
    run = Run(reconciler(**RULES))
    run(reading(0, 100.0), desired(0, 100.0), reading(3, 104.0))  # outside tolerance since 3 s
    assert run.r.next_due(run.state) == at(5)


def test_a_silent_twin_is_ticked_by_wall_time_and_escalates() -> None:
    policy = TwinPolicy.model_validate({"defaults": {"max_desync_time_s": 20, "parameters": {"speed": RULES}}})
    logic = TwinLogic(TwinProcessor(policy, WindowSpec()), None, idle_ticks=True)
    logic.on_item(("t1", [reading(0, 100.0)]))
    (out,), _ = logic.on_item(("t1", [desired(1, 120.0, twin="t1")]))  # one list per twin and batch
    assert [type(o) for o in out if isinstance(o, Command)] == [Command]
    wall = logic._wall
    assert logic.notify_at() == wall + timedelta(seconds=5)
    logic._wall = wall - timedelta(seconds=25)  # 25 s of silence have passed
    (out,), _ = logic.on_notify()
    kinds = sorted(o.kind for o in out if isinstance(o, DesyncEvent))
    assert kinds == ["command_failed", "desync"]
    assert logic._rt.state.clock >= at(26)
    assert TwinLogic(TwinProcessor(policy, WindowSpec()), None, idle_ticks=False).notify_at() is None
