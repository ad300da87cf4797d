"""The fault suite's comparison (tests/faults/outputs.py) sees what it must: lost, duplicated and
changed outputs of each kind, and leaves out only what is about the time after the run."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from tests.faults.harness import ALERT_ENV, SENSORS, Signal, settings_of
from tests.faults.outputs import Expected, Found, compare

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SIGNAL = Signal(fault_at=300, fault_len=100)


def _expected() -> Expected:
    settings = settings_of({**ALERT_ENV, "TWINFLOW_ML__ANOMALY__WARMUP": "200"})
    twins = [(f"t-{i}", [SIGNAL.envelope(f"t-{i}", i, n, T0) for n in range(800)]) for i in range(2)]
    return Expected.of(settings, twins, len(SENSORS))


EXPECTED = _expected()


def _as_stored(e: Expected) -> Found:
    """What a run without faults leaves in the database."""
    last: dict[str, tuple[int, str]] = {}
    for (aid, v), (_event, state, _ts) in e.alerts.items():
        if aid not in last or v > last[aid][0]:
            last[aid] = (v, state)
    return Found(
        e.rows,
        e.rows,
        dict(e.versions),
        dict(e.scores),
        dict(e.forecasts),
        list(e.alerts),
        dict(e.alerts),
        dict(e.episodes),
        last,
    )


def _unclean(found: Found) -> dict[str, tuple[int, int, int]]:
    return {t.kind: (t.lost, t.duplicated, t.changed) for t in compare(EXPECTED, found) if not t.clean}


def test_the_readings_open_and_resolve_an_alert_on_the_faulty_twin_only() -> None:
    assert {twin for twin, _kind, _at in EXPECTED.episodes.values()} == {"t-0"}
    assert sorted(event for event, _state, _ts in EXPECTED.alerts.values()) == ["opened", "resolved"]
    assert _unclean(_as_stored(EXPECTED)) == {}


def test_lost_duplicated_and_changed_outputs_are_counted() -> None:
    found = _as_stored(EXPECTED)
    found.distinct_rows -= 2  # as many rows, but two repeat others: two lost, two duplicated
    version = next(iter(found.versions))
    del found.versions[version]  # a gap
    twin, ts = next(iter(found.scores))
    found.scores[(twin, ts + timedelta(milliseconds=500))] = (0.1, False, "")  # a score no reading had
    key = next(iter(found.forecasts))
    found.forecasts[key] += 1.0  # a model that learned a reading twice
    alert = next(k for k, v in found.alerts.items() if v[0] == "opened")
    found.alert_rows.append(alert)  # the same version again at another time
    found.episodes["al-again"] = found.episodes[alert[0]]  # the episode opened twice
    assert _unclean(found) == {
        "telemetry rows": (2, 2, 0),
        "twin versions": (1, 0, 0),
        "anomaly scores": (0, 1, 0),
        "forecasts": (0, 0, 1),
        "alert versions": (0, 1, 0),
        "alert episodes": (0, 1, 0),
    }
    del found.alerts[alert]
    assert "alert versions" in _unclean(found)


def test_a_silent_sensor_after_the_last_reading_is_not_compared_during_the_run_it_is() -> None:
    found = _as_stored(EXPECTED)
    end = EXPECTED.last_ts["t-1"]
    after = copy.deepcopy(found)
    after.scores[("t-1", end + timedelta(seconds=10))] = (0.0, False, "sensor_fault")
    after.episodes["al-silent"] = ("t-1", "sensor_fault", end + timedelta(seconds=10))
    after.alerts[("al-silent", 1)] = ("opened", "open", end + timedelta(seconds=10))
    after.alert_rows.append(("al-silent", 1))
    after.alert_states["al-silent"] = (1, "open")
    assert _unclean(after) == {}
    during = found
    during.scores[("t-1", end - timedelta(seconds=100.5))] = (0.0, False, "sensor_fault")
    during.episodes["al-silent"] = ("t-1", "sensor_fault", end - timedelta(seconds=100.5))
    during.alerts[("al-silent", 1)] = ("opened", "open", end - timedelta(seconds=100.5))
    during.alert_rows.append(("al-silent", 1))
    during.alert_states["al-silent"] = (1, "open")
    assert set(_unclean(during)) == {"anomaly scores", "alert versions", "alert episodes", "alert rows (final state)"}
