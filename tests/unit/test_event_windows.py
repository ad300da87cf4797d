"""Event-time windows: order independence within the lateness, late routing, corrections."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.twin.event_windows import TwinWindows, WindowRow, WindowSpec, window_label
from tests.twin_helpers import at

LATENESS = timedelta(seconds=3)
SPEC = WindowSpec((timedelta(seconds=1), timedelta(minutes=1)), LATENESS)

Reading = tuple[float, int, float]  # (seconds, seq, value)


def run(readings: list[Reading], spec: WindowSpec = SPEC) -> tuple[dict, list, list[WindowRow]]:
    """Feed readings in the given order; return final rows by identity, late readings, all rows."""
    w = TwinWindows("t1", spec)
    rows: list[WindowRow] = []
    late = []
    for s, seq, value in readings:
        r, lt = w.add(at(s), seq, {"rpm": value, "temp": value / 10}, "mqtt")
        rows += r
        late += lt
    rows += w.flush()
    final: dict = {}
    for r in rows:
        key = (r.sensor, r.window, r.start)
        assert key not in final or final[key].version < r.version, "versions of a window row must grow"
        final[key] = r
    return final, late, rows


def assert_same_aggregates(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        assert (x.count, x.min, x.max, x.last, x.end) == (y.count, y.min, y.max, y.last, y.end), key
        assert x.mean == pytest.approx(y.mean, rel=1e-12)
        assert (x.stddev is None) == (y.stddev is None)
        if x.stddev is not None:
            assert x.stddev == pytest.approx(y.stddev, rel=1e-9, abs=1e-12)


def sorted_readings(n: int, rnd: random.Random) -> list[Reading]:
    t, out = 0.0, []
    for seq in range(n):
        t += rnd.choice([0.0, rnd.uniform(0.001, 0.9)])
        out.append((round(t, 6), seq, rnd.uniform(-50, 150)))
    return out


def shuffle_within_lateness(readings: list[Reading], rnd: random.Random) -> list[Reading]:
    """Arrival order = ts + U(0, lateness): each reading is at most `lateness` behind the newest."""
    bound = LATENESS.total_seconds() * 0.999
    return sorted(readings, key=lambda r: r[0] + rnd.uniform(0, bound))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=400), st.randoms(use_true_random=False))
def test_shuffled_within_lateness_gives_the_same_aggregates_as_sorted(n: int, rnd: random.Random) -> None:
    readings = sorted_readings(n, rnd)
    ordered, late_sorted, _ = run(readings)
    shuffled, late_shuffled, _ = run(shuffle_within_lateness(readings, rnd))
    assert late_sorted == [] and late_shuffled == []
    assert_same_aggregates(ordered, shuffled)
    assert sum(r.count for k, r in ordered.items() if k[0] == "rpm" and k[1] == "1s") == n


def test_aggregates_are_right() -> None:
    final, _, _ = run([(0.1, 1, 1.0), (0.5, 2, 3.0), (0.7, 3, 8.0), (1.2, 4, 5.0)])
    w = final[("rpm", "1s", at(0))]
    assert (w.count, w.mean, w.min, w.max, w.last) == (3, 4.0, 1.0, 8.0, 8.0)
    assert w.stddev == pytest.approx(math.sqrt(((1 - 4) ** 2 + (3 - 4) ** 2 + (8 - 4) ** 2) / 2))
    assert (w.start, w.end) == (at(0), at(1))
    m = final[("rpm", "1m", at(0))]
    assert (m.count, m.last) == (4, 5.0)
    assert final[("rpm", "1s", at(1))].stddev is None


def test_every_reading_beyond_the_lateness_goes_to_late_output_and_nowhere_else() -> None:
    rnd = random.Random(7)
    readings = sorted_readings(300, rnd)
    stragglers = [(s - 3.5 - rnd.uniform(0, 5), 10_000 + i, 1e6 + i) for i, (s, _, _) in enumerate(readings[100::20])]
    mixed = list(readings)
    for k, straggler in enumerate(stragglers):
        mixed.insert(101 + k * 21, straggler)  # arrives right after a reading 3.5 s or more newer
    final, late, _ = run(mixed)
    assert sorted((lt.seq, lt.sensor) for lt in late) == sorted(
        (seq, sensor) for _, seq, _ in stragglers for sensor in ("rpm", "temp")
    )
    assert all(lt.reason == "beyond_allowed_lateness" and lt.ts < lt.watermark for lt in late)
    assert all(r.max < 1e6 for r in final.values())
    expected, _, _ = run(readings)
    assert_same_aggregates(expected, final)


def test_a_late_reading_within_lateness_emits_a_correction_as_a_new_version() -> None:
    _, _, rows = run([(0.2, 1, 1.0), (1.5, 2, 2.0), (0.9, 3, 4.0)])
    versions = [
        (r.version, r.count, r.last) for r in rows if r.sensor == "rpm" and r.window == "1s" and r.start == at(0)
    ]
    assert versions == [(1, 1, 1.0), (2, 2, 4.0)]


def test_window_labels_and_spec_validation() -> None:
    assert [window_label(timedelta(seconds=s)) for s in (1, 60, 900, 3600, 0.25)] == [
        "1s",
        "1m",
        "15m",
        "1h",
        "250ms",
    ]
    with pytest.raises(ValueError):
        WindowSpec((timedelta(0),))
