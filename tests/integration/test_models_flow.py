"""The live models flow: scores every twin online, learns nothing in maintenance, resets on request."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from connectors.kafka.clients import ensure_topics, topic_specs
from flows.models import build_flow
from operators.records import model_control
from operators.records.alerts import AnomalyScore, ForecastPoint, TwinStatus, decode, encode
from tests.kafka_helpers import produce, read_topic
from tests.twin_kafka import envelope

pytestmark = pytest.mark.integration


def run_with_recovery(settings, recovery) -> None:
    """Run the flow to the end of its topics, keeping state in ``recovery`` between runs."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.testing import run_main

    from twinflow.runner import ensure_recovery_dir

    ensure_recovery_dir(recovery)
    run_main(
        build_flow(settings, tail=False),
        epoch_interval=timedelta(seconds=1),
        recovery_config=RecoveryConfig(str(recovery)),
    )


def test_scores_forecasts_and_maintenance(settings, unique, tmp_path):
    a = settings.alerts.model_copy(
        update={
            "status_topic": f"test.status.{unique}",
            "anomalies_topic": f"test.scores.{unique}",
            "forecasts_topic": f"test.forecasts.{unique}",
        }
    )
    s = settings.model_copy(
        update={
            "alerts": a,
            "topics": settings.topics.model_copy(update={"model_control": f"test.ctl.{unique}"}),
        }
    )
    ensure_topics(s, [t for t in topic_specs(s) if unique in t.name])
    healthy, faulty, resting = (f"m{unique}-{n}" for n in ("ok", "fault", "maint"))
    t0 = datetime.now(UTC) - timedelta(hours=1)
    produce(s, [(resting.encode(), encode(TwinStatus(resting, t0, maintenance=True)))], topic=a.status_topic)
    produce(
        s,
        [(b"x", b"not a control record")],
        topic=s.topics.model_control,
    )
    msgs = []
    for i in range(700):
        ts = t0 + timedelta(seconds=i)
        for twin in (healthy, faulty, resting):
            temp = 60 + math.sin(i / 10) + (25.0 if twin == faulty and i >= 600 else 0.0)
            readings = {"temp": temp, "rpm": 1450 + 5 * math.cos(i / 7), "vib": 2 + 0.1 * math.sin(i)}
            msgs.append((twin.encode(), envelope(twin, ts, i, readings, source="test")))
    # The status is consumed first (records of different topics have no order between them).
    run_with_recovery(s, tmp_path / "rec")
    produce(s, msgs)
    run_with_recovery(s, tmp_path / "rec")

    scores = [decode(AnomalyScore, r.value) for r in read_topic(s, a.anomalies_topic)]
    by_twin: dict[str, list[AnomalyScore]] = {}
    for sc in scores:
        by_twin.setdefault(sc.twin_id, []).append(sc)
    assert resting not in by_twin  # in maintenance from the start: never learned, so never scored
    assert not any(sc.is_anomaly for sc in by_twin[healthy])
    flagged = [sc for sc in by_twin[faulty] if sc.is_anomaly]
    assert flagged and min(sc.ts for sc in flagged) >= t0 + timedelta(seconds=600)
    assert max(flagged[0].contributions, key=flagged[0].contributions.get) == "temp"
    forecasts = [decode(ForecastPoint, r.value) for r in read_topic(s, a.forecasts_topic)]
    assert {f.sensor for f in forecasts if f.twin_id == healthy} == {"temp", "rpm", "vib"}
    assert all(f.lower <= f.predicted <= f.upper and f.target_ts > f.ts for f in forecasts)
    dlq = read_topic(s, s.topics.dlq)
    assert [r.headers["dlq.reason"] for r in dlq] == [b"schema"]


def test_reset_makes_the_twin_warm_up_again(settings, unique, tmp_path):
    a = settings.alerts.model_copy(
        update={"anomalies_topic": f"test.scores.{unique}", "status_topic": f"test.status.{unique}"}
    )
    s = settings.model_copy(
        update={
            "alerts": a,
            "topics": settings.topics.model_copy(update={"model_control": f"test.ctl.{unique}"}),
        }
    )
    ensure_topics(s, [t for t in topic_specs(s) if unique in t.name])
    twin = f"r{unique}"
    t0 = datetime.now(UTC) - timedelta(hours=1)

    def batch(start: int, n: int):
        return [
            (twin.encode(), envelope(twin, t0 + timedelta(seconds=i), i, {"x": math.sin(i / 5)}, source="test"))
            for i in range(start, start + n)
        ]

    produce(s, batch(0, 450))
    run_with_recovery(s, tmp_path / "rec")
    assert len(read_topic(s, a.anomalies_topic)) == 450 - 400  # scored after the 400-sample warm-up
    rec = model_control.ControlRecord(twin_id=twin, action="reset", requested_at=t0.isoformat())
    produce(s, [(twin.encode(), model_control.encode(rec))], topic=s.topics.model_control)
    run_with_recovery(s, tmp_path / "rec")
    produce(s, batch(450, 100))
    run_with_recovery(s, tmp_path / "rec")
    # Without the reset these 100 samples would be scored; after it the twin warms up again.
    assert len(read_topic(s, a.anomalies_topic)) == 450 - 400
