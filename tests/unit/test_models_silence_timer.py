"""The models flow's silence timers do not take an outage of the path for silent sensors (found by
tests/faults/test_pipeline_faults.py).

A twin's silence timer is wall time since its last reading (docs/ml.md, "Sensor faults"). Before:
a flow resumed after being down longer than the timer (`ml.sensor_health.silence_min_s`, 10 s) fired
every twin's timer at once — its snapshot kept the wall time of the last reading — and so did Kafka
unreachable for as long while the flow waited for input: one `silent` sensor-fault record and one
sensor_fault alert per twin, which a run without the fault never raised. Now a resumed twin's timer
counts from the restart, and a twin is silent only while the input of the process kept flowing
(after a pause of it, once the backlog had a whole silence time to arrive).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import flows.models
from flows.models import InputPauses, TwinModelsLogic
from flows.snapshots import from_snapshot, to_snapshot
from operators.ml.live_step import LiveModelConfig, Reading

CFG = LiveModelConfig(forecast_every=0)
SILENCE = timedelta(seconds=CFG.model.sensor_health.silence_min_s)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _reported(twin: str) -> TwinModelsLogic:
    """A twin's models after 50 readings at 1 Hz."""
    logic = TwinModelsLogic(None, CFG)
    logic.on_item((twin, [Reading(T0 + timedelta(seconds=i), {"a": float(i % 5), "b": 2.0}) for i in range(50)]))
    return logic


def _silent_since(logic: TwinModelsLogic, seconds: float) -> None:
    assert logic.state is not None and logic.state.wall_at_last is not None
    logic.state.wall_at_last -= seconds


def _silent_faults(logic: TwinModelsLogic) -> list[dict[str, str]]:
    out, _ = logic.on_notify()
    return [r.sensor_faults for records in out for r in records]


@pytest.fixture(autouse=True)
def _input(monkeypatch: pytest.MonkeyPatch) -> InputPauses:
    """The process' input as if readings had been flowing without a pause."""
    fresh = InputPauses()
    monkeypatch.setattr(flows.models, "INPUT", fresh)
    return fresh


def test_a_flow_down_longer_than_the_silence_timer_resumes_without_silent_sensors() -> None:
    before = _reported("t1")
    _silent_since(before, 300)  # its snapshot was written 5 minutes before the restart
    resumed = TwinModelsLogic(before.snapshot(), CFG)
    due = resumed.notify_at()
    assert due is not None  # the timer still runs ...
    assert due >= datetime.now(UTC) + SILENCE - timedelta(seconds=1)  # ... counted from the restart


def test_a_twin_still_silent_after_the_restart_is_flagged_while_others_report() -> None:
    resumed = TwinModelsLogic(to_snapshot(from_snapshot(_reported("t1").snapshot())), CFG)
    _silent_since(resumed, 2 * SILENCE.total_seconds())  # nothing since the restart ...
    _reported("t2")  # ... while another twin reports
    assert _silent_faults(resumed) == [{"a": "silent", "b": "silent"}]


def test_no_input_from_any_twin_is_the_path_not_the_sensors(_input: InputPauses) -> None:
    quiet = _reported("t1")
    _silent_since(quiet, 2 * SILENCE.total_seconds())
    _input.last -= 2 * SILENCE.total_seconds()  # no twin reported either: Kafka unreachable
    assert _silent_faults(quiet) == []
    assert quiet.notify_at() >= datetime.now(UTC) + SILENCE - timedelta(seconds=1)  # looks again later


def test_after_a_pause_of_the_input_a_twin_is_judged_once_its_backlog_had_time_to_come(_input: InputPauses) -> None:
    waiting = _reported("t1")
    _input.last -= 60  # Kafka unreachable for a minute ...
    _reported("t2")  # ... back: the backlog of other twins arrives first
    _silent_since(waiting, 2 * SILENCE.total_seconds())
    assert _silent_faults(waiting) == []
    ended, length = _input.pauses[-1]
    _input.pauses[-1] = (ended - 2 * SILENCE.total_seconds(), length)  # input has flowed since, and t1 sent nothing
    assert waiting.state is not None
    waiting.state.ticked_at -= 2 * SILENCE.total_seconds()
    assert _silent_faults(waiting) == [{"a": "silent", "b": "silent"}]
