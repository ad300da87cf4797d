"""Event-time windows: order independence within the lateness, late routing, corrections."""

from __future__ import annotations

import math
import pickle
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


def test_readings_added_as_runs_give_exactly_what_adding_them_one_by_one_gives() -> None:
    """TwinWindows.add_run aggregates in-order readings column-wise: the same rows (float for float),
    late readings, open windows and flush as add() per reading, with equal timestamps, small
    disorder, readings beyond the lateness, duplicate seqs, a missing sensor and a flush mid-way."""
    from operators.records.twin import Reported

    spec = WindowSpec((timedelta(seconds=1), timedelta(seconds=5)), timedelta(seconds=2))
    rng = random.Random(3)
    readings, s = [], 0.0
    for seq in range(4000):
        s += rng.choice([0.01] * 100 + [0.0, 0.0, -0.05, -0.3, 0.7]) if rng.random() > 0.003 else -4.0
        values = {"a": rng.uniform(0, 10), "b": rng.gauss(5, 1)} if rng.random() > 0.03 else {"a": 1.0}
        readings.append(Reported(at(s), rng.choice([seq] * 9 + [seq - 3]), "mqtt", values))
    one, many = TwinWindows("t1", spec), TwinWindows("t1", spec)
    expected: list = []
    got: list = []
    runs = 0
    for start in range(0, len(readings), 97):  # batches that cut runs anywhere
        batch = readings[start : start + 97]
        for r in batch:
            rows, late = one.add(r.ts, r.seq, r.values, r.source)
            expected += rows + late
        k = 0
        while k < len(batch):
            rows, late, nxt = many.add_run(batch, k, len(batch))
            got += rows + late
            runs += nxt - k > 1
            k = nxt
        if start == 1940:
            expected += one.flush()
            got += many.flush()
    assert got == expected
    stored = pickle.loads(pickle.dumps(many))  # what a snapshot holds: the pending run aggregated
    assert (stored.open, stored.max_ts, stored._next_due) == (one.open, one.max_ts, one._next_due)
    assert many.flush() == one.flush()
    assert runs > 50 and any(isinstance(x, WindowRow) and x.version > 1 for x in got)  # runs and corrections
    assert any(not isinstance(x, WindowRow) for x in got)  # late readings


def test_a_run_lasts_across_calls_and_snapshots() -> None:
    """A tailing flow offers about one reading per twin and polled batch: the readings of a window
    wait as one run across calls and are aggregated when the window closes, a flush or a snapshot
    needs them (or add() of a single reading); rows, late readings and what a snapshot resumes are those
    of add() per reading."""
    from flows.snapshots import from_snapshot, to_snapshot
    from operators.records.twin import Reported

    spec = WindowSpec((timedelta(seconds=1), timedelta(seconds=10)), timedelta(seconds=2))
    rng = random.Random(11)
    readings, s = [], 0.0
    for seq in range(3000):
        s += rng.choice([0.04] * 50 + [0.0, -0.1, 1.3]) if rng.random() > 0.002 else -3.0
        values = {"a": rng.uniform(0, 10), "b": rng.gauss(5, 1)} if rng.random() > 0.02 else {"b": 2.0}
        readings.append(Reported(at(s), seq, "mqtt", values))
    one, many = TwinWindows("t1", spec), TwinWindows("t1", spec)
    expected: list = []
    got: list = []
    deferred = 0
    for k, r in enumerate(readings):
        rows, late = one.add(r.ts, r.seq, r.values, r.source)
        expected += rows + late
        if k % 97 == 50:  # add() of one reading (the flow's single-event path) on a pending run
            rows, late = many.add(r.ts, r.seq, r.values, r.source)
        else:
            rows, late, nxt = many.add_run(readings, k, k + 1)
            assert nxt == k + 1
        got += rows + late
        deferred += many._run is not None and bool(many._run.values)
        if k % 250 == 125:  # an epoch's snapshot in the middle of a run: the flow goes on with it, or resumes from it
            snapshot = to_snapshot(many)
            assert from_snapshot(snapshot) == one
            if k % 500 == 125:
                many = from_snapshot(snapshot)
    assert got == expected and deferred > 2000
    assert any(isinstance(x, WindowRow) and x.version > 1 for x in got)  # corrections
    assert any(not isinstance(x, WindowRow) for x in got)  # late readings
    assert many.flush() == one.flush()


def test_a_run_never_takes_last_from_a_reading_older_than_the_windows_latest() -> None:
    """(ts, 10) then (ts, 5): `last` stays seq 10's value, also for (ts, 7) after it (a run from seq 5)."""
    from operators.records.twin import Reported

    batch = [Reported(at(0.5), seq, "mqtt", {"a": float(seq)}) for seq in (10, 5, 7, 8)]
    one, many = TwinWindows("t1", SPEC), TwinWindows("t1", SPEC)
    for r in batch:
        one.add(r.ts, r.seq, r.values, r.source)
    k = 0
    while k < len(batch):
        _, _, k = many.add_run(batch, k, len(batch))
    assert {agg.last for w in many.open.values() for agg in w.sensors.values()} == {10.0}
    assert many.flush() == one.flush()


def test_windows_resume_from_snapshots_of_either_form() -> None:
    """The aggregates pickle as their field values (dozens per twin in every epoch's snapshot);
    snapshots of pickle's default form, written before, resume too; both give the rows of a run
    that never stopped."""
    import copyreg
    import io
    import pickle

    from flows.snapshots import from_snapshot, to_snapshot
    from operators.twin.event_windows import _Agg, _Window

    readings = [(s * 0.25, s, float(s % 7)) for s in range(400)]

    def feed(w: TwinWindows, part: list[Reading]) -> list[WindowRow]:
        return [r for s, seq, v in part for r in w.add(at(s), seq, {"rpm": v, "temp": v / 10}, "mqtt")[0]]

    whole = TwinWindows("t1", SPEC)
    feed(whole, readings[:200])
    expected = feed(whole, readings[200:])
    first = TwinWindows("t1", SPEC)
    feed(first, readings[:200])
    default = io.BytesIO()  # as earlier versions pickled the aggregates: (None, {slot: value}) each
    pickler = pickle.Pickler(default, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {
        **copyreg.dispatch_table,
        **dict.fromkeys((_Agg, _Window), lambda o: object.__reduce_ex__(o, pickle.HIGHEST_PROTOCOL)),
    }
    pickler.dump(first)
    assert len(to_snapshot(first)) < 0.8 * len(default.getvalue())
    for snapshot in (to_snapshot(first), default.getvalue()):
        resumed = from_snapshot(snapshot)
        assert resumed == first
        assert feed(resumed, readings[200:]) == expected and expected
