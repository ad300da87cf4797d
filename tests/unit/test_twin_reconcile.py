"""The reconciler: strategies, versions, stale desired updates, commands, escalation, modes."""

from __future__ import annotations

import pytest

from operators.twin.state import CommandStatus, Status
from tests.twin_helpers import Run, ack, alerts, at, changes, commands, desired, reading, reconciler


def test_every_change_is_exactly_one_new_version_and_nothing_is_a_no_op_version() -> None:
    run = Run(reconciler())
    run(reading(0, 100.0, seq=1))
    assert run.state.version == 1
    run(reading(1, 100.0, seq=2))  # same value: timestamp refreshed, no new version
    assert run.state.version == 1
    assert run.state.reported["speed"] == (100.0, at(1))
    out = run(reading(2, 101.0, seq=3, temp=20.0))
    assert [c.version for c in changes(out)] == [2]
    assert changes(out)[0].change["fields"] == {
        "reported.speed": [100.0, 101.0],
        "reported.temp": [None, 20.0],
    }
    run(reading(1.5, 50.0, seq=4))  # older than the held value: newer source timestamp wins
    assert run.state.reported["speed"] == (101.0, at(2))
    assert run.state.version == 2


def test_digital_wins_sends_a_command_and_syncs_after_the_device_converges() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=2.0, ack_timeout_s=30))
    run(reading(0, 100.0))
    out = run(desired(10, 120.0, expected_version=1, author="ann", reason="more flow"))
    (cmd,) = commands(out)
    assert (cmd.parameter, cmd.value, cmd.twin_id, cmd.issued_at) == ("speed", 120.0, "t1", at(10))
    assert cmd.deadline == at(40)
    (ch,) = changes(out)
    assert ch.change["author"] == "ann" and ch.change["reason"] == "more flow"
    assert ch.snapshot["status"] == "desynced"
    assert ch.snapshot["delta"] == {"speed": 20.0}
    assert cmd.command_id == f"t1:{ch.version}:speed"
    run(ack(11, cmd.command_id, applied_at=at(11)), reading(12, 119.5), reading(12.5, 120.2))
    assert run.state.status is Status.DESYNCED  # within the clear band for less than the hold time
    run(reading(13, 119.9))
    assert run.state.status is Status.SYNCHRONIZED
    assert run.state.sync_latency_ms == pytest.approx(2000.0)  # desync at 10 s, in band from 12 s
    assert run.state.last_sync_time == at(13)
    assert run.state.consistency_score == 1.0
    assert len(commands(run.out)) == 1


def test_physical_wins_desired_follows_reported_without_commands() -> None:
    run = Run(reconciler(strategy="physical_wins", tolerance=1.0))
    run(reading(0, 100.0), desired(1, 150.0))
    run(reading(2, 104.0))
    assert run.state.desired["speed"][0] == 104.0
    assert run.state.delta() == {"speed": 0.0}
    assert run.state.status is Status.SYNCHRONIZED
    assert commands(run.out) == []


def test_merge_newer_desired_wins_with_a_command() -> None:
    run = Run(reconciler(strategy="merge", tolerance=1.0, hold_time_s=0.5))
    run(reading(0, 100.0))
    (cmd,) = commands(run(desired(5, 130.0)))
    assert cmd.value == 130.0
    run(reading(6, 110.0), reading(7, 125.0))  # ramping while the command is in flight
    assert run.state.desired["speed"][0] == 130.0
    run(ack(7.5, cmd.command_id), reading(8, 130.0), reading(9, 130.2))
    assert run.state.status is Status.SYNCHRONIZED


def test_merge_newer_reported_wins_and_ties_go_to_reported() -> None:
    run = Run(reconciler(strategy="merge", tolerance=1.0, hold_time_s=0.5))
    run(reading(10, 100.0))
    out = run(desired(10, 130.0))  # same source timestamp: the tie goes to reported
    assert commands(out) == []
    assert run.state.desired["speed"][0] == 100.0
    assert run.state.desired["speed"][2] == "merge: reported is newer"
    run(desired(11, 90.0), reading(12, 90.0), reading(13, 90.0))  # newer desired: driven and reached
    assert run.state.status is Status.SYNCHRONIZED
    run(reading(20, 95.0), reading(20.6, 95.0))  # someone turned the knob on the machine afterwards
    assert run.state.desired["speed"][0] == 95.0
    assert run.state.status is Status.SYNCHRONIZED


def test_ack_timeout_retries_with_backoff_then_gives_up_and_escalates() -> None:
    run = Run(
        reconciler(
            strategy="digital_wins",
            tolerance=1.0,
            ack_timeout_s=2,
            max_attempts=3,
            backoff_base_s=1,
            backoff_max_s=5,
        )
    )
    run.r.rules("t1").max_desync_time_s = 20.0
    run(reading(0, 100.0))
    (c1,) = commands(run(desired(0, 120.0)))
    assert commands(run(at(1.9))) == []
    run(at(2))  # deadline passed without an ack
    assert run.state.params["speed"].command.status is CommandStatus.RETRY_WAIT
    assert commands(run(at(2.9))) == []
    (c2,) = commands(run(at(3)))  # backoff 1 s after attempt 1
    run(ack(4, c2.command_id, "failed", error="bus timeout"))  # a failed ack retries as well
    assert commands(run(at(5.9))) == []
    (c3,) = commands(run(at(6)))  # backoff 2 s after attempt 2
    assert [c.value for c in (c1, c2, c3)] == [120.0] * 3
    assert len({c.command_id for c in (c1, c2, c3)}) == 3
    assert run.state.params["speed"].command.attempt == 3
    out = run(at(8))
    (failed,) = alerts(out, "command_failed")
    assert failed.detail["attempts"] == 3 and failed.detail["error"] == "ack timeout"
    assert commands(run(at(15))) == []
    assert alerts(run.out, "desync") == []
    (esc,) = alerts(run(at(20)), "desync")
    assert esc.detail["since"] == at(0) and esc.detail["parameters"] == ["speed"]
    assert alerts(run(at(60)), "desync") == []  # once per desync episode


def test_a_rejected_command_is_not_retried() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=1.0))
    run(reading(0, 100.0))
    (c1,) = commands(run(desired(0, 9999.0)))
    out = run(ack(1, c1.command_id, "rejected", error="out of range"))
    (rej,) = alerts(out, "command_rejected")
    assert rej.detail["error"] == "out of range"
    assert commands(run(at(100))) == []


def test_superseded_acks_change_nothing_and_the_newest_commands_ack_decides() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=1.0, critical=True, ack_timeout_s=2))
    run(reading(0, 100.0))
    burst = [commands(run(desired(0.1, 110.0 + i)))[0] for i in range(3)]
    version = run.state.version
    # The bridge wrote only the newest: the older ones, and a repeat of the newest, are answered superseded.
    for cmd in burst:
        assert run(ack(0.5, cmd.command_id, "superseded", error="not written")) == []
    assert run.state.version == version and run.state.params["speed"].command.command_id == burst[-1].command_id
    assert run.state.params["speed"].command.status is CommandStatus.PENDING
    run(ack(0.6, burst[-1].command_id), reading(0.7, 112.0), reading(6, 112.0))  # held 5 s (hold_time_s)
    assert run.state.status is Status.SYNCHRONIZED and alerts(run.out) == []
    assert commands(run(at(10))) == []  # nothing retried


def test_critical_parameters_sync_only_after_the_ack() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=5.0, critical=True, ack_timeout_s=60))
    run(reading(0, 100.0))
    (cmd,) = commands(run(desired(1, 102.0)))  # within tolerance but critical: strong consistency
    run(reading(2, 102.0), reading(5, 102.0))
    assert run.state.status is Status.DESYNCED
    assert run.state.consistency_score == 0.5
    run(ack(6, cmd.command_id, applied_at=at(6)))
    assert run.state.status is Status.SYNCHRONIZED
    assert run.state.sync_latency_ms == pytest.approx(5000.0)  # until the ack at 6 s


def test_non_critical_parameters_sync_within_tolerance_without_an_ack() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=5.0, ack_timeout_s=60))
    run(reading(0, 100.0))
    run(desired(1, 102.0))
    assert run.state.status is Status.SYNCHRONIZED


def test_maintenance_suppresses_escalation_holds_commands_and_stops_learning() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=1.0))
    run.r.rules("t1").max_desync_time_s = 10.0
    run(reading(0, 100.0))
    out = run(desired(1, mode="maintenance", author="tech", reason="bearing swap"))
    assert changes(out)[0].snapshot["status"] == "maintenance"
    assert changes(out)[0].snapshot["learn"] is False
    assert commands(run(desired(2, 150.0))) == []  # held while in maintenance
    run(reading(100, 100.0), reading(200, 100.0))
    assert alerts(run.out, "desync") == []
    assert run.state.status is Status.MAINTENANCE
    (cmd,) = commands(run(desired(300, mode="normal")))
    assert cmd.value == 150.0 and run.state.status is Status.DESYNCED and run.state.learn
    assert alerts(run(at(309)), "desync") == []  # the desync clock restarted when maintenance ended
    assert alerts(run(at(310)), "desync") != []


def test_simulated_values_never_enter_reported_state_or_history() -> None:
    run = Run(reconciler())
    run(reading(0, 100.0))
    run(desired(1, mode="simulating"))
    version = run.state.version
    out = run(reading(2, 500.0, source="whatif"), reading(3, 600.0, source="whatif"))
    assert changes(out) == []
    assert run.state.version == version
    assert run.state.reported["speed"] == (100.0, at(0))
    assert run.state.simulated["speed"] == (600.0, at(3))
    assert run.state.status is Status.SIMULATING and run.state.learn is False
    snap = changes(run(reading(4, 101.0)))[0].snapshot
    assert snap["reported"]["speed"]["value"] == 101.0 and snap["simulated"]["speed"]["value"] == 600.0
    assert all(c.snapshot["reported"].get("speed", {}).get("value") not in (500.0, 600.0) for c in changes(run.out))


def test_drift_after_convergence_redrives_under_digital_wins() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=1.0, hold_time_s=1))
    run(reading(0, 100.0))
    (c1,) = commands(run(desired(0, 110.0)))
    run(ack(1, c1.command_id), reading(1, 110.0), reading(2, 110.0))
    assert run.state.status is Status.SYNCHRONIZED
    run(reading(3, 104.0))
    assert commands(run(reading(3.5, 104.0))) == []  # not yet held for 1 s
    (c2,) = commands(run(reading(4, 104.0)))
    assert c2.value == 110.0 and c2.command_id != c1.command_id


def test_consistency_score_formula() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=2.0, hold_time_s=100))
    run(reading(0, 100.0), desired(0, 100.0))
    assert run.state.consistency_score == 1.0
    run(desired(1, 108.0))  # |delta| 8, tolerance 2 → closeness 2/8
    assert run.state.consistency_score == pytest.approx(0.25)
    run(reading(2, 107.0))
    assert run.state.consistency_score == pytest.approx(1.0)  # |delta| 1 ≤ tolerance


def test_a_missing_ack_is_not_retried_when_a_non_critical_value_was_reached() -> None:
    run = Run(reconciler(strategy="digital_wins", tolerance=1.0, ack_timeout_s=5, hold_time_s=1))
    run(reading(0, 100.0))
    (cmd,) = commands(run(desired(0, 110.0)))
    run(reading(1, 110.0), reading(2, 110.0))
    assert run.state.status is Status.SYNCHRONIZED
    assert commands(run(reading(6, 110.0))) == []
    assert run.state.params["speed"].command.status is CommandStatus.REACHED
    assert alerts(run.out) == []
    run(ack(7, cmd.command_id))  # a late ack is ignored
    assert run.state.params["speed"].command.status is CommandStatus.REACHED
