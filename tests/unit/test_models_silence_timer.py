"""The models flow's silence timers do not take an outage of the path for silent sensors (found by
tests/faults/test_pipeline_faults.py).

A twin's silence timer is wall time since its last reading (docs/ml.md, "Sensor faults"). Before:
a flow resumed after being down longer than the timer (`ml.sensor_health.silence_min_s`, 10 s) fired
every twin's timer at once — its snapshot kept the wall time of the last reading — and so did Kafka
unreachable for as long while the flow waited for input: one `silent` sensor-fault record and one
sensor_fault alert per twin, which a run without the fault never raised. Now a resumed twin's timer
counts from the restart, and a twin is silent only while the path of the process's input worked
(its Kafka partitions polled a reachable broker: :class:`PathPauses`; after a pause, once the
backlog had a whole silence time to arrive) — also when it is the only twin that reports there.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from flows.models import TwinModelsLogic
from flows.snapshots import from_snapshot, to_snapshot
from operators.ml.live_state import LiveModelConfig
from operators.ml.live_step import Reading
from operators.ml.path_pauses import PathPauses

CFG = LiveModelConfig(forecast_every=0)
SILENCE = timedelta(seconds=CFG.model.sensor_health.silence_min_s)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _reported(twin: str, path: PathPauses | None = None) -> TwinModelsLogic:
    """A twin's models after 50 readings at 1 Hz."""
    logic = TwinModelsLogic(None, CFG, path)
    logic.on_item((twin, [Reading(T0 + timedelta(seconds=i), {"a": float(i % 5), "b": 2.0}) for i in range(50)]))
    return logic


def _silent_since(logic: TwinModelsLogic, seconds: float) -> None:
    assert logic.state is not None and logic.state.wall_at_last is not None
    logic.state.wall_at_last -= seconds


def _silent_faults(logic: TwinModelsLogic) -> list[dict[str, str]]:
    out, _ = logic.on_notify()
    return [r.sensor_faults for records in out for r in records]


PART = "0-telemetry.raw"
S = SILENCE.total_seconds()


def _path(*polled: tuple[float, float]) -> PathPauses:
    """A path whose partition polled its broker every 0.5 s over each (from, to) stretch (seconds
    relative to now), and not between them."""
    now = time.time()
    path = PathPauses(started=now + polled[0][0])
    for start, end in polled:
        t = start
        while t <= end:
            path.heartbeat(PART, now + t)
            t += 0.5
    return path


def test_a_flow_down_longer_than_the_silence_timer_resumes_without_silent_sensors() -> None:
    path = _path((-60, 0))
    before = _reported("t1", path)
    _silent_since(before, 300)  # its snapshot was written 5 minutes before the restart
    resumed = TwinModelsLogic(before.snapshot(), CFG, path)
    due = resumed.notify_at()
    assert due is not None  # the timer still runs ...
    assert due >= datetime.now(UTC) + SILENCE - timedelta(seconds=1)  # ... counted from the restart


def test_a_twin_still_silent_after_the_restart_is_flagged_while_its_path_works() -> None:
    resumed = TwinModelsLogic(to_snapshot(from_snapshot(_reported("t1").snapshot())), CFG, _path((-60, 0)))
    _silent_since(resumed, 2 * S)  # nothing since the restart
    assert _silent_faults(resumed) == [{"a": "silent", "b": "silent"}]


def test_the_only_twin_of_its_process_is_flagged_silent_while_its_path_works() -> None:
    alone = _reported("t1", _path((-60, 0)))  # no other twin reports: the path's own health tells
    _silent_since(alone, 2 * S)
    assert _silent_faults(alone) == [{"a": "silent", "b": "silent"}]


def test_a_path_that_stopped_polling_is_the_path_not_the_sensors() -> None:
    quiet = _reported("t1", _path((-60, -2 * S)))  # Kafka unreachable (or the flow held up) since
    _silent_since(quiet, 2 * S)
    assert _silent_faults(quiet) == []
    assert quiet.notify_at() >= datetime.now(UTC) + SILENCE - timedelta(seconds=1)  # looks again later


def test_after_a_pause_of_the_path_a_twin_is_judged_once_its_backlog_had_time_to_come() -> None:
    just_back = _reported("t1", _path((-200, -100), (-1, 0)))  # Kafka back a second ago
    _silent_since(just_back, 2 * S)
    assert _silent_faults(just_back) == []  # its backlog may still be coming
    back_since = _reported("t1", _path((-200, -100), (-1.5 * S, 0)))  # the path has worked since
    _silent_since(back_since, 2 * S)
    assert _silent_faults(back_since) == [{"a": "silent", "b": "silent"}]
