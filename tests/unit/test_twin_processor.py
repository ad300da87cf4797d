"""Per-twin processing: what reaches the windows, deadband, picklable state for recovery."""

from __future__ import annotations

import pickle
from datetime import timedelta

from operators.records.twin import Reported
from operators.twin.event_windows import WindowRow, WindowSpec
from operators.twin.processor import TwinProcessor
from operators.twin.state import StateChange
from operators.twin.sync_strategy import TwinPolicy
from tests.twin_helpers import at

SPEC = WindowSpec((timedelta(seconds=1),), timedelta(seconds=1))


def test_whatif_and_bad_quality_readings_stay_out_of_windows_and_reported() -> None:
    proc = TwinProcessor(TwinPolicy(), SPEC)
    rt = proc.new("t1")
    proc.process(rt, Reported(at(0.1), 1, "mqtt", {"x": 1.0}))
    proc.process(rt, Reported(at(0.2), 2, "whatif", {"x": 100.0}))
    proc.process(rt, Reported(at(0.3), 3, "mqtt", {"x": 50.0}, quality=2))
    proc.process(rt, Reported(at(0.4), 4, "mqtt", {"x": 3.0}))
    out = proc.process(rt, Reported(at(1.5), 5, "mqtt", {"x": 5.0}))
    (row,) = [o for o in out if isinstance(o, WindowRow)]
    assert (row.count, row.min, row.max, row.mean) == (2, 1.0, 3.0, 2.0)
    assert rt.state.reported["x"][0] == 5.0 and rt.state.simulated["x"][0] == 100.0
    assert [r.count for r in proc.flush(rt)] == [1]
    assert proc.flush(rt) == []  # nothing unpublished any more


def test_deadband_suppresses_versions_for_small_moves() -> None:
    policy = TwinPolicy.model_validate({"defaults": {"parameters": {"temp": {"deadband": 0.5}}}})
    proc = TwinProcessor(policy, SPEC)
    rt = proc.new("t1")
    versions = []
    for i, v in enumerate([20.0, 20.2, 20.4, 20.6, 21.2]):
        out = proc.process(rt, Reported(at(i), i, "mqtt", {"temp": v}))
        versions += [o.version for o in out if isinstance(o, StateChange)]
    # 20.0 → v1; 20.2 and 20.4 are within 0.5 of the held value (refreshed); 20.6 is not → v2; 21.2 → v3
    assert versions == [1, 2, 3]
    assert rt.state.reported["temp"] == (21.2, at(4))


def test_runtime_round_trips_through_pickle_for_recovery_snapshots() -> None:
    proc = TwinProcessor(TwinPolicy(), SPEC)
    rt = proc.new("t1")
    proc.process(rt, Reported(at(0), 1, "mqtt", {"x": 1.0}))
    copy = pickle.loads(pickle.dumps(rt))
    out_a = proc.process(rt, Reported(at(2), 2, "mqtt", {"x": 2.0}))
    out_b = proc.process(copy, Reported(at(2), 2, "mqtt", {"x": 2.0}))
    assert out_a == out_b and out_a
