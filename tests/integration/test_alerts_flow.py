"""Acceptance of the alert lifecycle end to end on the real stack.

A fault is injected into twin A's anomaly scores (and the same fault into twin B, which is in
maintenance). The alerts flow (Kafka → operator → twin.alerts + PostgreSQL + webhook) must open
one alert for A within the configured minimum duration, not duplicate it while the fault lasts,
take an acknowledgement from the CLI, resolve it after recovery, deliver every version to a
real HTTP receiver with a valid signature, and raise nothing for B. Replaying all topics from the
beginning (another cross-topic read order, no recovery state) must leave the database unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from typer.testing import CliRunner

from connectors.kafka.clients import TopicSpec, alert_topic_specs, client_config, ensure_topics, topic_specs
from connectors.postgres.migrate import migrate
from connectors.webhook.sender import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from flows.alerts import build_flow
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import Alert, AnomalyScore, FailurePrediction, ForecastPoint, TwinStatus, encode
from tests.kafka_helpers import produce, read_topic
from tests.twin_kafka import envelope
from tests.webhook_receiver import Receiver
from twinflow.cli.main import app

pytestmark = pytest.mark.integration
SECRET = "flow-test-secret"
MIN_DURATION, COOL_DOWN, PERIOD = 30.0, 60.0, 5


@pytest.fixture
def alert_settings(settings, monkeypatch):
    suffix = uuid.uuid4().hex[:8]
    names = {
        f: f"test.{f}.{suffix}"
        for f in (
            "topic",
            "actions_topic",
            "anomalies_topic",
            "failures_topic",
            "forecasts_topic",
            "status_topic",
        )
    }
    alerts = settings.alerts.model_copy(
        update={
            **names,
            "partitions": 2,
            "rules": AlertRules(anomaly=KindRule(MIN_DURATION, COOL_DOWN), escalate_after_s=0),
        }
    )
    twin = settings.twin.model_copy(update={"desync_topic": f"test.desync.{suffix}"})  # an input of its own
    s = settings.model_copy(update={"alerts": alerts, "twin": twin})
    ensure_topics(s, [*alert_topic_specs(s), TopicSpec(twin.desync_topic, 1, {})])
    migrate(s.postgres.conninfo(), s.postgres.timescaledb)
    # the CLI reads its settings from the environment
    for field, name in names.items():
        monkeypatch.setenv(f"TWINFLOW_ALERTS__{field.upper()}", name)
    yield s
    AdminClient(client_config(s)).delete_topics([*names.values(), twin.desync_topic])


def scores(twin: str, t0: datetime, start: int, stop: int, fault: tuple[int, int]) -> list[AnomalyScore]:
    out = []
    for s in range(start, stop, PERIOD):
        bad = fault[0] <= s < fault[1]
        value = 2.0 + (s % 3) * 0.3 if bad else 0.2
        contrib = (
            {"vibration": 0.7, "temp_c": 0.2, "rpm": 0.1} if bad else {"vibration": 0.3, "temp_c": 0.4, "rpm": 0.3}
        )
        out.append(AnomalyScore(twin, t0 + timedelta(seconds=s), value, 1.0, bad, contrib, "hst"))
    return out


def send(s, topic: str, records) -> None:
    produce(s, [(r.twin_id.encode(), encode(r)) for r in records], topic=topic)


def alerts_out(s) -> list[Alert]:
    return [msgspec.json.decode(r.value, type=Alert) for r in read_topic(s, s.alerts.topic)]


def db_rows(s, twins: list[str]) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(s.postgres.conninfo()) as db:
        alerts = db.execute(
            "SELECT alert_id, twin_id, state, version, acked_by, acked_at IS NOT NULL, resolved_by"
            " FROM alerts WHERE twin_id = ANY(%s) ORDER BY opened_at",
            (twins,),
        ).fetchall()
        events = db.execute(
            "SELECT alert_id, version, event FROM alert_events WHERE twin_id = ANY(%s) ORDER BY version",
            (twins,),
        ).fetchall()
    return alerts, events


def test_fault_opens_once_ack_via_cli_clears_after_recovery_webhook_signed_maintenance_silent(alert_settings, tmp_path):
    uid = uuid.uuid4().hex[:8]
    twin_a, twin_b = f"pump-a-{uid}", f"pump-b-{uid}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=400)
    fault = (120, 600)  # seconds after t0; recovery afterwards
    a = alert_settings.alerts
    rdir = tmp_path / "recovery"
    rdir.mkdir()
    init_db_dir(rdir, 1)

    with Receiver() as rx:
        s = alert_settings.model_copy(
            update={"alerts": a.model_copy(update={"webhook_url": rx.url, "webhook_secret": SecretStr(SECRET)})}
        )

        def run() -> None:
            run_main(
                build_flow(s, tail=False),
                epoch_interval=timedelta(seconds=1),
                recovery_config=RecoveryConfig(str(rdir)),
            )

        # phase 0: B enters maintenance through the CLI (status changes apply in event-time order:
        # B's data starts after the status record's time)
        # (`twinflow twin mode B maintenance` makes the twin flow publish this record; tests/integration/
        # test_control_plane.py covers that path)
        send(alert_settings, a.status_topic, [TwinStatus(twin_b, datetime.now(UTC), True, "tech", "maintenance")])
        tb = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        run()
        # phase 1: both twins run into the same fault
        send(s, a.anomalies_topic, scores(twin_a, t0, 0, 400, fault) + scores(twin_b, tb, 0, 400, fault))
        run()
        first = alerts_out(s)
        assert [(x.twin_id, x.event, x.state) for x in first] == [(twin_a, "opened", "open")]
        opened = first[0]
        onset = t0 + timedelta(seconds=fault[0])
        assert onset < opened.opened_at <= onset + timedelta(seconds=MIN_DURATION + PERIOD)
        assert [t["sensor"] for t in opened.evidence["top_sensors"]][:1] == ["vibration"]
        assert db_rows(s, [twin_a, twin_b])[0] == [(opened.alert_id, twin_a, "open", 1, None, False, None)]

        # acknowledged through the CLI: the DB row at once, the flow through twin.alert_actions
        result = CliRunner().invoke(app, ["alerts", "ack", opened.alert_id, "--by", "alice"])
        assert result.exit_code == 0, result.output
        assert "acknowledged by alice" in result.output
        assert db_rows(s, [twin_a])[0][0][2:6] == ("acknowledged", 1, "alice", True)
        listed = CliRunner().invoke(app, ["alerts", "list", "--twin", twin_a, "--json"])
        assert listed.exit_code == 0 and opened.alert_id in listed.output and "alice" in listed.output

        run()  # the live flow picks the action up
        acked = alerts_out(s)[-1]
        assert (acked.version, acked.state, acked.acked_by) == (2, "acknowledged", "alice")

        # phase 2: the fault goes on, then recovery
        send(s, a.anomalies_topic, scores(twin_a, t0, 400, 900, fault) + scores(twin_b, tb, 400, 900, fault))
        run()
        versions = alerts_out(s)
        assert [(x.alert_id, x.version, x.event, x.state) for x in versions] == [
            (opened.alert_id, 1, "opened", "open"),
            (opened.alert_id, 2, "acknowledged", "acknowledged"),
            (opened.alert_id, 3, "resolved", "resolved"),
        ]
        resolved = versions[-1]
        assert resolved.acked_by == "alice" and resolved.resolved_by == "auto"
        end = t0 + timedelta(seconds=fault[1])
        assert end + timedelta(seconds=COOL_DOWN) <= resolved.resolved_at <= end + timedelta(seconds=COOL_DOWN + PERIOD)

        # the webhook got every version, signed
        bodies = [msgspec.json.decode(r.body, type=Alert) for r in rx.requests]
        assert [(b.alert_id, b.version) for b in bodies] == [(opened.alert_id, v) for v in (1, 2, 3)]
        for r in rx.requests:
            assert verify(SECRET.encode(), r.headers[TIMESTAMP_HEADER], r.body, r.headers[SIGNATURE_HEADER])

    expected = (
        [(opened.alert_id, twin_a, "resolved", 3, "alice", True, "auto")],
        [
            (opened.alert_id, 1, "opened"),
            (opened.alert_id, 2, "acknowledged"),
            (opened.alert_id, 3, "resolved"),
        ],
    )
    assert db_rows(s, [twin_a, twin_b]) == expected

    # replay everything from the beginning, without recovery state: the topics are read in
    # another order than live (the ack and B's maintenance may come after all scores). A reorder
    # window covering the replayed span (the backfill setting, docs/alerts.md) applies them in
    # event-time order: the rows of both twins are unchanged and B still has no alert.
    rules = dataclasses.replace(a.rules, reorder_window_s=3600.0)
    replay = alert_settings.model_copy(update={"alerts": a.model_copy(update={"webhook_url": None, "rules": rules})})
    run_main(build_flow(replay, tail=False))
    assert db_rows(s, [twin_a, twin_b]) == expected
    assert {(x.twin_id, x.alert_id, x.version) for x in alerts_out(s)} == {
        (twin_a, opened.alert_id, v) for v in (1, 2, 3)
    }


def test_model_outputs_reach_the_database_and_bad_records_the_dlq(alert_settings):
    s, a = alert_settings, alert_settings.alerts
    uid = uuid.uuid4().hex[:8]
    twin = f"pump-m-{uid}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    send(s, a.failures_topic, [FailurePrediction(twin, t0, 2 * 3600.0, 0.8, 0.1, 86400.0)])
    fc = ForecastPoint(twin, "temp_c", t0, t0 + timedelta(hours=1), 88.0, 85.0, 91.0, 90.0, t0 + timedelta(hours=2))
    send(s, a.forecasts_topic, [fc])
    send(s, a.anomalies_topic, scores(twin, t0, 0, 30, (0, 0)))
    produce(
        s,
        [(twin.encode(), b"{oops"), (b"someone-else", encode(scores(twin, t0, 0, 5, (0, 0))[0]))],
        topic=a.anomalies_topic,
    )
    run_main(build_flow(s, tail=False))
    run_main(build_flow(s, tail=False))  # a replay changes nothing
    with psycopg.connect(s.postgres.conninfo()) as db:
        assert db.execute("SELECT count(*) FROM anomaly_scores WHERE twin_id = %s", (twin,)).fetchone() == (6,)
        assert db.execute(
            "SELECT rul_s, failure_probability FROM failure_predictions WHERE twin_id = %s", (twin,)
        ).fetchall() == [(7200.0, 0.8)]
        assert db.execute(
            "SELECT predicted, lower, upper, limit_value, breach_at FROM forecasts WHERE twin_id = %s",
            (twin,),
        ).fetchall() == [(88.0, 85.0, 91.0, 90.0, t0 + timedelta(hours=2))]
    # the failure prediction (RUL 2 h) opened a critical alert with the time to failure
    # (twin.alerts is at-least-once: the replay wrote the same versions again, with the same ids)
    opened = [x for x in alerts_out(s) if x.twin_id == twin and x.kind == "failure" and x.event == "opened"]
    assert {(x.alert_id, x.severity, x.evidence["time_to_failure_s"]) for x in opened} == {
        (opened[0].alert_id, "critical", 7200.0)
    }
    dead = read_topic(s, s.topics.dlq)
    reasons = sorted({(r.headers["dlq.reason"], r.headers["dlq.topic"]) for r in dead})
    assert reasons == [
        (b"bad_json", a.anomalies_topic.encode()),
        (b"key_mismatch", a.anomalies_topic.encode()),
    ]


def test_simulated_fault_raises_one_alert_acked_via_cli_cleared_after_recovery(alert_settings, tmp_path):
    """The acceptance run with the plant simulator's fault injection instead of hand-made scores.

    Two simulated pumps (connectors.sim: affinity-law physics, noise) get the same valve closure;
    pump B is in maintenance. Their telemetry goes through the live models flow (online anomaly
    detection, default settings) and the alerts flow, both with recovery between the phases as
    deployed. The simulator runs in simulated time (1 sample/s), so the test is quick and
    deterministic; the protocol path from the same simulator is tested in test_connectors_e2e.
    """
    from connectors.bridges.mapping.loading import parse_mapping
    from connectors.sim.faults import Fault
    from connectors.sim.plant import Plant
    from flows.models import build_flow as build_models_flow
    from twinflow.runner import ensure_recovery_dir

    uid = uuid.uuid4().hex[:8]
    twin_a, twin_b = f"pump-sa-{uid}", f"pump-sb-{uid}"
    onset, end, total = 900, 1500, 2100  # seconds: warm-up and calibration, fault, recovery
    detect_within = MIN_DURATION + 60.0  # onset → alert open: the rule's minimum duration + detection
    signals = ("speed_rpm", "flow_m3h", "head_m", "power_kw", "temp_c", "vibration_mm_s")
    mapping = parse_mapping(
        {
            "assets": [
                {
                    "twin_id": t,
                    "type": "pump",
                    "protocol": "mqtt",
                    "topic": f"sim/{t}",
                    "params": {s: {"path": s} for s in signals},
                }
                for t in (twin_a, twin_b)
            ]
        }
    )
    faults = [Fault(t, "valve_closure", onset, end, 1.0) for t in (twin_a, twin_b)]
    plant = Plant(mapping, faults, seed=11)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=total + 60)

    a = alert_settings.alerts
    topics = alert_settings.topics.model_copy(
        update={"raw": f"test.raw.{uid}", "dlq": f"test.dlq.{uid}", "model_control": f"test.ctl.{uid}"}
    )
    with Receiver() as rx:
        s = alert_settings.model_copy(
            update={
                "topics": topics,
                "alerts": a.model_copy(update={"webhook_url": rx.url, "webhook_secret": SecretStr(SECRET)}),
            }
        )
        ensure_topics(s, [t for t in topic_specs(s) if uid in t.name])
        recovery = {name: ensure_recovery_dir(tmp_path / name) for name in ("models", "alerts")}

        def run_pipeline() -> None:
            for name, build in (("models", build_models_flow), ("alerts", build_flow)):
                run_main(
                    build(s, tail=False),
                    epoch_interval=timedelta(seconds=1),
                    recovery_config=RecoveryConfig(str(recovery[name])),
                )

        def simulate(until: int) -> None:
            msgs = []
            while plant.t < until:
                samples = plant.step(1.0)
                ts = t0 + timedelta(seconds=plant.t)
                for twin, sample in samples.items():
                    msgs.append((twin.encode(), envelope(twin, ts, round(plant.t), sample.values, source="sim")))
            produce(s, msgs, topic=s.topics.raw)

        simulate(onset - 100)  # warm-up and calibration of both twins' models
        run_pipeline()
        # a technician puts B into maintenance before its fault starts (the flows see the status
        # before B's next readings: records of different topics have no order between them)
        in_maintenance = t0 + timedelta(seconds=plant.t + 0.5)
        send(s, a.status_topic, [TwinStatus(twin_b, in_maintenance, maintenance=True, by="tech")])
        run_pipeline()
        simulate(onset + (end - onset) // 2)  # into the middle of the fault
        run_pipeline()
        first = alerts_out(s)
        # the fast time scale opens one anomaly alert; the slow one sees the twin leave its healthy
        # reference and opens one condition alert (issue 12); B, in maintenance, opens nothing
        assert {(x.twin_id, x.kind) for x in first if x.event == "opened"} == {
            (twin_a, "anomaly"),
            (twin_a, "condition"),
        }
        opened = next(x for x in first if x.kind == "anomaly")
        condition = next(x for x in first if x.kind == "condition")
        fault_start = t0 + timedelta(seconds=onset)
        assert fault_start < opened.opened_at <= fault_start + timedelta(seconds=detect_within)
        assert opened.evidence["top_sensors"], opened.evidence
        assert fault_start < condition.opened_at and condition.evidence["drivers"], condition.evidence

        def anomaly_versions() -> list[Alert]:
            return [x for x in alerts_out(s) if x.alert_id == opened.alert_id]

        result = CliRunner().invoke(app, ["alerts", "ack", opened.alert_id, "--by", "alice"])
        assert result.exit_code == 0, result.output
        run_pipeline()  # the live flow picks the acknowledgement up
        assert [(x.version, x.event, x.acked_by) for x in anomaly_versions()][1:] == [(2, "acknowledged", "alice")]

        simulate(total)  # the rest of the fault, then recovery
        run_pipeline()
        versions = [(x.twin_id, x.alert_id, x.version, x.event) for x in anomaly_versions()]
        assert versions == [
            (twin_a, opened.alert_id, 1, "opened"),
            (twin_a, opened.alert_id, 2, "acknowledged"),
            (twin_a, opened.alert_id, 3, "resolved"),
        ]
        resolved = anomaly_versions()[-1]
        assert resolved.acked_by == "alice" and resolved.resolved_by == "auto"
        # the novelty re-learns a lasting change after relearn_s (450 s; the fault lasts 600 s), so the
        # anomaly alert may resolve before the fault ends; the condition alert stays open until the
        # pump is back at its healthy reference
        assert resolved.resolved_at > opened.opened_at + timedelta(seconds=s.ml.anomaly.relearn_s)
        cond_last = [x for x in alerts_out(s) if x.alert_id == condition.alert_id][-1]
        assert cond_last.event == "resolved" and cond_last.resolved_at > t0 + timedelta(seconds=end)  # healthy again
        bodies = [msgspec.json.decode(r.body, type=Alert) for r in rx.requests]
        assert [(b.alert_id, b.version) for b in bodies if b.alert_id == opened.alert_id] == [
            (opened.alert_id, v) for v in (1, 2, 3)
        ]
        for r in rx.requests:
            assert verify(SECRET.encode(), r.headers[TIMESTAMP_HEADER], r.body, r.headers[SIGNATURE_HEADER])
    rows = [r for r in db_rows(s, [twin_a, twin_b])[0] if r[0] == opened.alert_id]
    assert rows == [(opened.alert_id, twin_a, "resolved", 3, "alice", True, "auto")]
    with psycopg.connect(s.postgres.conninfo()) as db:  # B's fault was flagged, but B raised no alert
        flagged = db.execute(
            "SELECT count(*) FROM anomaly_scores WHERE twin_id = %s AND is_anomaly AND ts > %s",
            (twin_b, in_maintenance),
        ).fetchone()[0]
    assert flagged > 0
    AdminClient(client_config(s)).delete_topics([f"test.raw.{uid}", f"test.dlq.{uid}", f"test.ctl.{uid}"])


def test_a_model_of_your_own_beside_the_builtin_one_raises_its_alert_and_it_clears_when_both_are_normal(
    alert_settings, tmp_path
):
    """A user's model publishes its scores to the anomalies topic as plain JSON (any language's
    Kafka producer), named in ``model``, beside the built-in model's records of the same twin. Its
    lasting anomaly opens the twin's alert although the built-in model's records in between are
    normal; the alert names it; it stays open while either model sees the fault and resolves once
    both are normal (docs/alerts.md, "A model of your own")."""
    s, a = alert_settings, alert_settings.alerts
    twin = f"pump-own-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=900)
    rdir = tmp_path / "recovery"
    rdir.mkdir()
    init_db_dir(rdir, 1)

    def publish(start: int, stop: int, mine: float, builtin: float) -> None:
        """Every 10 s a record of my model, 5 s later one of the built-in model."""
        messages = []
        for sec in range(start, stop, 10):
            own = {"twin_id": twin, "ts": (t0 + timedelta(seconds=sec)).isoformat(), "score": mine,
                   "threshold": 1.0, "is_anomaly": mine >= 1.0, "contributions": {"bearing_temp": 1.0},
                   "model": "vib-lstm"}  # fmt: skip
            ours = AnomalyScore(twin, t0 + timedelta(seconds=sec + 5), builtin, 1.0, builtin >= 1.0, {}, "twinflow-t2")
            messages += [(twin.encode(), json.dumps(own).encode()), (twin.encode(), encode(ours))]
        produce(s, messages, topic=a.anomalies_topic)

    def run() -> list[Alert]:
        recovery = RecoveryConfig(str(rdir))
        run_main(build_flow(s, tail=False), epoch_interval=timedelta(seconds=1), recovery_config=recovery)
        return [x for x in alerts_out(s) if x.twin_id == twin]

    publish(0, 100, mine=2.0, builtin=0.1)  # my model sees a fault the built-in one does not
    opened = run()
    onset = t0 + timedelta(seconds=MIN_DURATION)  # my model's records alone count: above from t0
    assert [(x.event, x.kind, x.opened_at) for x in opened] == [("opened", "anomaly", onset)]
    assert opened[0].evidence["sources"] == ["vib-lstm"] and "raised by vib-lstm" in opened[0].summary

    publish(100, 300, mine=0.1, builtin=2.0)  # mine recovers, the built-in model now sees it: still open
    publish(300, 400, mine=2.0, builtin=0.1)
    assert [x.event for x in run()] == ["opened"]

    publish(400, 600, mine=0.1, builtin=0.1)  # both normal: resolved after the cool-down
    versions = run()
    assert [(x.alert_id, x.event) for x in versions] == [(opened[0].alert_id, e) for e in ("opened", "resolved")]
    assert versions[-1].resolved_at == t0 + timedelta(seconds=400 + COOL_DOWN)
    assert versions[-1].evidence["sources"] == ["vib-lstm", "twinflow"]
    assert db_rows(s, [twin])[0] == [(opened[0].alert_id, twin, "resolved", 2, None, False, "auto")]
