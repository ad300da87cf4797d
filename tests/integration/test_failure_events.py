"""Live failure prediction: twin.events (CLI or CMMS) → models flow → twin.failure_predictions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from connectors.kafka.clients import client_config, ensure_topics, topic_specs
from operators.records import twin_events
from operators.records.alerts import FailurePrediction, decode
from tests.integration.test_models_flow import run_with_recovery
from tests.kafka_helpers import produce, read_topic
from tests.twin_kafka import envelope
from twinflow.cli.main import app
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

LIVES = {"u0": 120, "u1": 140, "u2": 160, "o0": 150, "o1": 170}  # samples from new to failure


def private_settings(settings: Settings, unique: str) -> Settings:
    a = settings.alerts.model_copy(
        update={
            "status_topic": f"test.status.{unique}",
            "anomalies_topic": f"test.scores.{unique}",
            "forecasts_topic": f"test.forecasts.{unique}",
            "failures_topic": f"test.failures.{unique}",
        }
    )
    topics = settings.topics.model_copy(update={"model_control": f"test.ctl.{unique}", "events": f"test.ev.{unique}"})
    ml = settings.ml.model_copy(
        update={
            "model": "rul",
            "forecasts": False,
            "time_unit_s": 1.0,  # one reading per second: RUL in seconds
            "predict_every": 10,
            "failure": settings.ml.failure.__class__(rul_cap=100, horizon=20),
        }
    )
    return settings.model_copy(update={"alerts": a, "topics": topics, "ml": ml})


def drop_private_topics(s: Settings, unique: str) -> None:
    admin = AdminClient(client_config(s))
    names = [t.name for t in topic_specs(s) if unique in t.name]
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        fut.result(30)


def readings(twin: str, t0: datetime, start: int, stop: int) -> list[tuple[bytes, bytes]]:
    life = LIVES[twin.rsplit("-", 1)[1]]
    return [
        (
            twin.encode(),
            envelope(
                twin,
                t0 + timedelta(seconds=i),
                i,
                {"wear": i / life + 0.01 * math.sin(i), "temp": 60 + 0.1 * math.cos(i / 3)},
                source="test",
            ),
        )
        for i in range(start, stop)
    ]


def test_failures_teach_the_fleet_which_then_predicts_for_the_other_twins(settings, unique, tmp_path):
    s = private_settings(settings, unique)
    ensure_topics(s, [t for t in topic_specs(s) if unique in t.name])
    try:
        twins = {name: f"f{unique}-{name}" for name in LIVES}
        t0 = datetime.now(UTC) - timedelta(hours=1)
        msgs = []
        for name, twin in twins.items():  # trained twins run to failure, the others to 100 samples
            msgs += readings(twin, t0, 0, LIVES[name] if name.startswith("u") else 100)
        produce(s, msgs)
        run_with_recovery(s, tmp_path / "rec")
        assert read_topic(s, s.alerts.failures_topic) == []  # the fleet has learned nothing yet

        events = [
            (
                twin.encode(),
                twin_events.encode(twin_events.TwinEvent(twin, "failure", t0 + timedelta(seconds=life - 1))),
            )
            for name, (twin, life) in ((n, (twins[n], LIVES[n])) for n in ("u0", "u1", "u2"))
        ]
        bad = b'{"twin_id": "x", "kind": "exploded", "time": "2026-11-25T08:00:00Z"}'
        produce(s, [*events, (b"x", bad)], topic=s.topics.events)
        run_with_recovery(s, tmp_path / "rec")
        assert read_topic(s, s.alerts.failures_topic) == []  # learned, but no twin has asked since

        produce(s, readings(twins["o0"], t0, 100, 140) + readings(twins["o1"], t0, 100, 140))
        run_with_recovery(s, tmp_path / "rec")

        preds = [decode(FailurePrediction, r.value) for r in read_topic(s, s.alerts.failures_topic)]
        assert sorted({p.twin_id for p in preds}) == sorted([twins["o0"], twins["o1"]])
        assert len(preds) == 2 * 4  # one per 10 samples of each twin
        for p in preds:
            assert 0.0 <= p.rul_low_s <= p.rul_s <= p.rul_high_s and 0.0 <= p.failure_probability <= 1.0
            assert p.horizon_s == 20.0 and p.model_version == 3 and p.uncertainty > 0
        dlq = read_topic(s, s.topics.dlq)
        assert [(r.value, r.headers["dlq.reason"]) for r in dlq] == [(bad, b"schema")]
        assert b"exploded" in dlq[0].headers["dlq.detail"]
    finally:
        drop_private_topics(s, unique)


def test_model_event_cli_records_a_failure_keyed_by_twin(settings, unique, monkeypatch):
    topic = f"test.ev.{unique}"
    monkeypatch.setenv("TWINFLOW_TOPICS__EVENTS", topic)
    s = settings.model_copy(update={"topics": settings.topics.model_copy(update={"events": topic})})
    twin = f"pump-{unique}"
    try:
        res = CliRunner().invoke(
            app, ["model", "event", twin, "--kind", "failure", "--at", "2026-11-25T08:00:00Z", "--note", "WO-17"]
        )
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(app, ["model", "event", twin, "--kind", "repair"])
        assert res.exit_code == 0, res.output
        recs = read_topic(s, topic)
        assert [r.key for r in recs] == [twin.encode()] * 2
        failure, repair = (twin_events.decode(r.value) for r in recs)
        assert (failure.kind, failure.time, failure.note) == ("failure", datetime(2026, 11, 25, 8, tzinfo=UTC), "WO-17")
        assert repair.kind == "repair" and abs(repair.time - datetime.now(UTC)) < timedelta(minutes=5)
        assert failure.author and failure.twin_id == twin
    finally:
        admin = AdminClient(client_config(s))  # kept alive until the deletion is confirmed
        admin.delete_topics([topic], operation_timeout=30)[topic].result(30)


@pytest.mark.parametrize(
    "args",
    [
        ["no spaces allowed", "--kind", "failure"],
        ["pump-1", "--kind", "exploded"],
        ["pump-1", "--kind", "failure", "--at", "yesterday"],
    ],
)
def test_model_event_cli_rejects_bad_input(args):
    res = CliRunner().invoke(app, ["model", "event", *args])
    assert res.exit_code == 2, res.output
