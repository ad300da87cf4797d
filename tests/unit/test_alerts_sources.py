"""The alert lifecycle judges each source (model) of a twin's outputs on its own records.

A model of your own publishes to the same topics as the built-in models (docs/alerts.md, "A model
of your own"): a kind's alert opens when one source's condition has held for its minimum duration,
names the sources that raised it, and clears only when every source's condition is below.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from datetime import UTC, datetime, timedelta

from flows.snapshots import from_snapshot, to_snapshot
from operators.alerts.episode import KindState, LiveAlert
from operators.alerts.lifecycle import TwinAlerts
from operators.alerts.ordering import OrderedTwinAlerts, step
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import (
    AlertAction,
    AnomalyScore,
    FailurePrediction,
    ForecastPoint,
    TwinStatus,
    decode,
    encode,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
RULES = AlertRules(anomaly=KindRule(min_duration_s=30, cool_down_s=60), escalate_after_s=0)
MINE = "vib-lstm"


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def score(s: float, value: float, model: str = "twinflow-t2") -> AnomalyScore:
    return AnomalyScore("p1", at(s), value, 1.0, value >= 1.0, {"vibration": 0.7, "temp": 0.3}, model)


def feed(engine: TwinAlerts, records) -> list:
    out = []
    for r in records:
        out += engine.apply(r)
    return out


def alternating(start: int, stop: int, mine: float, builtin: float) -> list[AnomalyScore]:
    """Every 10 s a record of my model, 5 s later one of the built-in model."""
    return [r for s in range(start, stop, 10) for r in (score(s, mine, MINE), score(s + 5, builtin))]


def test_a_normal_record_of_one_model_does_not_reset_anothers_pending_onset():
    e = TwinAlerts("p1", RULES)
    assert feed(e, alternating(0, 30, mine=2.0, builtin=0.1)) == []
    opened = feed(e, alternating(30, 40, mine=2.0, builtin=0.1))
    assert [(a.event, a.opened_at) for a in opened] == [("opened", at(30))]  # my model's 30 s above
    assert opened[0].evidence["sources"] == [MINE]
    assert "raised by vib-lstm" in opened[0].summary
    assert opened[0].evidence["peak_score"] == 2.0  # the evidence of the model that holds the condition


def test_the_alert_clears_only_when_every_source_is_below_and_names_both():
    e = TwinAlerts("p1", RULES)
    opened = feed(e, alternating(0, 40, mine=2.0, builtin=0.1))
    # my model recovers while the built-in one sees the fault: one alert, still open, raised by both
    assert feed(e, alternating(40, 300, mine=0.1, builtin=3.0)) == []
    assert e.kinds["anomaly"].live.raised_by == [MINE, "twinflow"]
    # both normal: resolved after the cool-down, counted from the first record with both below
    closed = feed(e, alternating(300, 500, mine=0.1, builtin=0.1))
    assert [(a.event, a.alert_id, a.resolved_at) for a in closed] == [("resolved", opened[0].alert_id, at(365))]
    assert closed[0].evidence["sources"] == [MINE, "twinflow"]
    assert closed[0].severity == "critical"  # 3.0 from the built-in model raised it
    # a new run starts from nothing: one source's records alone open again after the minimum duration
    assert feed(e, alternating(500, 530, mine=0.1, builtin=2.0)) == []
    assert [a.opened_at for a in feed(e, alternating(530, 540, mine=0.1, builtin=2.0))] == [at(535)]


def test_records_without_a_model_and_the_builtin_models_records_are_one_source():
    """Records without ``model`` (older producers) are the built-in models': their normal record
    resets the onset as before, and the alert names no sources."""
    e = TwinAlerts("p1", RULES)
    assert feed(e, [score(0, 2.0), score(10, 0.1, model=""), score(20, 2.0), score(40, 2.0, model="")]) == []
    opened = feed(e, [score(50, 2.0)])
    assert [a.opened_at for a in opened] == [at(50)] and "sources" not in opened[0].evidence
    assert "raised by" not in opened[0].summary


def test_a_person_resolving_makes_every_source_start_over():
    e = TwinAlerts("p1", RULES)
    opened = feed(e, alternating(0, 40, mine=2.0, builtin=0.1))
    feed(e, [AlertAction(opened[0].alert_id, "p1", "resolve", "alice", at(41))])
    assert feed(e, alternating(50, 80, mine=2.0, builtin=0.1)) == []  # my model's minimum duration again
    assert [a.opened_at for a in feed(e, alternating(80, 90, mine=2.0, builtin=0.1))] == [at(80)]


def test_maintenance_drops_every_sources_pending_onset():
    e = TwinAlerts("p1", RULES)
    feed(e, alternating(0, 20, mine=2.0, builtin=2.0))
    feed(e, [TwinStatus("p1", at(20), True, "tech"), TwinStatus("p1", at(21), False, "tech")])
    assert feed(e, alternating(30, 60, mine=2.0, builtin=2.0)) == []
    assert [a.opened_at for a in feed(e, alternating(60, 70, mine=2.0, builtin=2.0))] == [at(60)]


def test_a_model_of_your_own_forecasts_breaches_the_builtin_forecasts_of_the_same_sensor_do_not_clear():
    e = TwinAlerts("p1", RULES)

    def fc(s: float, model: str, breach: bool) -> ForecastPoint:
        return ForecastPoint(
            "p1", "temp", at(s), at(s + 600), 88.0, 85.0, 91.0, 90.0, at(s + 3600) if breach else None, model
        )

    records = [r for s in range(0, 1800, 20) for r in (fc(s, MINE, True), fc(s + 10, "", False))]
    out = feed(e, records)
    assert [(a.kind, a.event) for a in out] == [("forecast_breach", "opened")]  # not resolved after 600 s
    assert out[0].evidence["sources"] == [MINE] and out[0].evidence["breaches"][0]["sensor"] == "temp"
    out = feed(e, [r for s in range(1800, 2500, 20) for r in (fc(s, MINE, False), fc(s + 10, "", False))])
    assert [(a.event, a.resolved_at) for a in out] == [("resolved", at(2400))]


def test_failure_predictions_of_two_models_are_judged_apart():
    e = TwinAlerts("p1", RULES)
    mine = [FailurePrediction("p1", at(s), 3600.0, 0.9, model=MINE) for s in range(0, 1200, 20)]
    builtin = [
        FailurePrediction("p1", at(s + 10), 30 * 86400.0, 0.01, model="twinflow-t2-rul:pumps")
        for s in range(0, 1200, 20)
    ]
    out = feed(e, sorted(mine + builtin, key=lambda r: r.ts))
    assert [(a.event, a.evidence["sources"]) for a in out] == [("opened", [MINE])]


def _old_layout(state: OrderedTwinAlerts) -> bytes:
    """``state`` pickled as the version before sources were judged apart pickled it: the same classes
    without the fields added since (``sources``, ``raised_by``, ``model_forecasts``)."""
    added = {"sources", "raised_by", "model_forecasts"}

    def without_added(obj):
        slots = {f: getattr(obj, f) for f in obj.__dataclass_fields__ if f not in added}
        return copyreg.__newobj__, (type(obj),), (None, slots)

    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {
        **copyreg.dispatch_table,
        **dict.fromkeys((TwinAlerts, KindState, LiveAlert), without_added),
    }
    pickler.dump(state)
    return out.getvalue()


def test_a_snapshot_of_the_earlier_layout_resumes_as_the_uninterrupted_run():
    """An earlier version's snapshot (one run per kind, no sources) resumes: its pending onset and its
    live alert go on as the run of the first source heard."""
    records = [
        decode(AnomalyScore, encode(r)) for r in [score(s, 2.0 if 20 <= s < 200 else 0.1) for s in range(0, 400, 5)]
    ]
    records += [FailurePrediction("p1", at(s), 3600.0 if s < 100 else 30 * 86400.0, 0.6) for s in range(0, 400, 50)]
    records.sort(key=lambda r: r.ts)
    expected: list = []
    state = None
    for r in records:
        state, out = step(state, r, RULES)
        expected += out
    expected += state.flush()
    assert [a.event for a in expected if a.kind == "anomaly"] == ["opened", "resolved"]
    seen = set()
    for cut in range(5, len(records), 3):
        state, out = None, []
        for i, r in enumerate(records):
            if i == cut:
                state = from_snapshot(_old_layout(state))
                ks = state.alerts.kinds.get("anomaly")
                assert ks is None or ks.sources == {}
                seen.add("live" if ks and ks.live else "pending" if ks and ks.onset else "idle" if ks else "-")
            state, new = step(state, r, RULES)
            out += new
        assert out + state.flush() == expected, cut
    assert {"pending", "live"} <= seen
    assert from_snapshot(to_snapshot(state)).alerts == state.alerts
