"""Every flow's wiring run offline: Bytewax's ``TestingSource`` in, ``TestingSink`` out, no Kafka,
no database (the integration tests run the same wiring on the real stack).

Each flow's ``dataflow(settings, source, sinks)`` is the code ``build_flow`` runs in production;
the tests feed it Kafka-shaped messages and assert on what reaches the sinks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main

import flows.alerts
import flows.models
import flows.pipeline
import flows.telemetry
import flows.twin
from connectors.batch_sink import flatten
from connectors.kafka.messages import STORED_HEADERS, stored
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import Alert, AnomalyScore, decode, encode
from operators.records.twin import Command, DesyncEvent
from operators.security.request_auth import envelope as signed_envelope
from operators.security.request_auth import new_private_key, public_key_text, sign
from operators.telemetry.ingest import TelemetryRow
from operators.twin.desired_gate import MemoryStore
from tests.twin_kafka import envelope
from twinflow.settings import Settings

T0 = datetime.now(UTC)  # set again for each test (below): recent, so readings and signed requests are fresh


@pytest.fixture(autouse=True)
def _recent_t0() -> None:
    """T0 two minutes before the test runs, not before collection (a long suite would make requests stale)."""
    global T0
    T0 = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0)


class Messages:
    """Kafka-shaped input: one partition per topic, offsets in order, Kafka timestamps in ms."""

    def __init__(self) -> None:
        self.items: list[KafkaSourceMessage] = []

    def add(
        self, topic: str, key: str, value: bytes, at: datetime | None = None, headers: list | None = None
    ) -> Messages:
        ts = (1, int((at or T0).timestamp() * 1000))
        offset = sum(m.topic == topic for m in self.items)
        self.items.append(
            KafkaSourceMessage(key.encode(), value, topic, headers or [], partition=0, offset=offset, timestamp=ts)
        )
        return self

    def source(self) -> TestingSource:
        return TestingSource(self.items, batch_size=4)


def on(out: list[Any], topic: str) -> list[Any]:
    """The Kafka messages of ``out`` (messages, or lists of them) for ``topic``."""
    return [m for m in flatten(out) if m.topic == topic]


def headers(message: Any) -> dict[str, bytes]:
    return dict(message.headers or ())


def reading(twin: str, seq: int, at: datetime, **values: Any) -> bytes:
    return envelope(twin, at, seq, values)


# ---------------------------------------------------------------- telemetry


def test_telemetry_flow_writes_rows_and_dead_letters_a_bad_reading_with_its_reason() -> None:
    s = Settings()
    raw = s.topics.raw
    bad_value = orjson.dumps(
        {"v": 1, "twin_id": "p1", "ts": T0.isoformat(), "seq": 3, "source": "mqtt", "readings": {"t": 1.5, "m": [1]}}
    )
    msgs = (
        Messages()
        .add(raw, "p1", reading("p1", 1, T0, speed=100.0, temp=20.0))
        .add(raw, "p1", b"{not json")
        .add(raw, "p1", bad_value)
        .add(raw, "p1", reading("p1", 1, T0, speed=999.0))  # seq 1 again: a duplicate
        .add(raw, "p2", reading("p2", 1, T0 + timedelta(days=1), speed=5.0))  # from the future
    )
    rows: list[list[TelemetryRow]] = []
    out: list[Any] = []
    sinks = flows.telemetry.TelemetrySinks(TestingSink(rows), TestingSink(out))
    run_main(flows.telemetry.dataflow(s, msgs.source(), sinks))

    written = sorted((r.twin_id, r.sensor, r.value) for batch in rows for r in batch)
    assert written == [("p1", "speed", 100.0), ("p1", "t", 1.5), ("p1", "temp", 20.0)]  # "t" went on without "m"
    dead = on(out, s.topics.dlq)
    reasons = sorted((headers(d)["dlq.reason"], headers(d).get("dlq.field")) for d in dead)
    assert reasons == [(b"bad_json", None), (b"duplicate_seq", None), (b"schema", b"readings.m"), (b"ts_future", None)]
    assert {d.value for d in dead} >= {b"{not json", bad_value}  # the original bytes
    assert len(out) == len(dead)


# ---------------------------------------------------------------- twin


@pytest.fixture
def gate_files(tmp_path: Path) -> tuple[Settings, Any]:
    """Settings whose desired-state gate trusts one operator, and that operator's key."""
    key = new_private_key()
    (tmp_path / "subjects.toml").write_text(
        f'[subject.ann]\nroles = ["operator"]\npublic_keys = ["{public_key_text(key)}"]\n'
    )
    (tmp_path / "policy.toml").write_text(
        '[[rule]]\nname = "ops"\nsubject = { roles = "operator" }\n[rule.parameters]\nspeed = { min = 0, max = 3000 }\n'
    )
    policy = {"defaults": {"strategy": "digital_wins", "tolerance": 1.0, "hold_time_s": 0, "max_desync_time_s": 10}}
    s = Settings(
        security={"subjects_file": tmp_path / "subjects.toml", "policy_file": tmp_path / "policy.toml"},
        twin={"policy": policy},
    )
    return s, key


def desired(twin: str, at: datetime, key: Any, **values: float) -> bytes:
    req = {"twin_id": twin, "values": values, "request_id": f"req-{twin}-0001", "issued_at": at.isoformat()}
    return signed_envelope(*sign({**req, "subject": "ann"}, key))


def twin_input(s: Settings, key: Any) -> Messages:
    """p1 reports speed 100; ann wants 300 at T0+1 s; the machine stays at 100 for 20 s."""
    msgs = Messages().add(s.topics.raw, "p1", reading("p1", 1, T0, speed=100.0))
    msgs.add(s.twin.desired_topic, "p1", desired("p1", T0 + timedelta(seconds=1), key, speed=300.0), T0)
    for i in range(2, 22, 2):
        msgs.add(s.topics.raw, "p1", reading("p1", i, T0 + timedelta(seconds=i), speed=100.0))
    return msgs.add(s.twin.acks_topic, "p1", b"[not an ack")


def run_twin(s: Settings, msgs: Messages) -> tuple[list[Any], list[Any], MemoryStore]:
    out: list[Any] = []
    history: list[Any] = []
    store = MemoryStore()
    sinks = flows.twin.TwinSinks(TestingSink(out), TestingSink(history), TestingSink([]), store)
    run_main(flows.twin.dataflow(s, msgs.source(), sinks, idle_ticks=False))
    return out, history, store


def test_twin_flow_turns_a_lasting_desync_into_a_desync_event_on_its_own_topic(gate_files) -> None:
    s, key = gate_files
    out, history, store = run_twin(s, twin_input(s, key))

    assert [v.decision for v in store.log] == ["allow"]  # the gate's verdict, recorded
    commands = [msgspec.json.decode(m.value, type=Command) for m in on(out, s.twin.commands_topic)]
    assert {(c.parameter, c.value) for c in commands} == {("speed", 300.0)}  # sent, then retried: no ack came
    (event,) = [msgspec.json.decode(m.value, type=DesyncEvent) for m in on(out, s.twin.desync_topic)]
    assert (event.twin_id, event.kind, event.detail["parameters"]) == ("p1", "desync", ["speed"])
    assert event.at == T0 + timedelta(seconds=12)  # desynced since T0+1 s, max_desync_time_s = 10
    states = [orjson.loads(m.value) for m in on(out, s.twin.state_topic)]
    assert states[-1]["status"] == "desynced" and [st["version"] for st in states] == list(range(1, len(states) + 1))
    assert history  # versions and windows for the database
    (dead,) = on(out, s.topics.dlq)
    assert (dead.value, headers(dead)["dlq.reason"]) == (b"[not an ack", b"schema")
    assert not on(out, s.alerts.topic)  # alert versions are the alerts flow's


# ---------------------------------------------------------------- models


def steady(msgs: Messages, s: Settings, twin: str, n: int = 30) -> Messages:
    """``n`` readings of ``twin``, one a second: enough for its models to warm up (warmup 5)."""
    for i in range(n):
        msgs.add(s.topics.raw, twin, reading(twin, i + 1, T0 + timedelta(seconds=i), temp=20.0 + i % 3, rpm=1000.0))
    return msgs


def test_models_flow_scores_readings_and_dead_letters_a_bad_status_record() -> None:
    s = Settings(ml={"anomaly": {"warmup": 5}, "forecasts": False})
    msgs = steady(Messages(), s, "p1")
    msgs.add(s.alerts.status_topic, "p1", b'{"twin_id": "p1"}')
    out: list[Any] = []
    run_main(flows.models.dataflow(s, msgs.source(), TestingSink(out)))

    scores = [msgspec.json.decode(m.value, type=AnomalyScore) for m in on(out, s.alerts.anomalies_topic)]
    assert scores and {sc.twin_id for sc in scores} == {"p1"}
    assert [sc.ts for sc in scores] == sorted(sc.ts for sc in scores)
    assert all(m.key == b"p1" for m in on(out, s.alerts.anomalies_topic))
    (dead,) = on(out, s.topics.dlq)
    assert headers(dead)["dlq.reason"] == b"schema" and dead.value == b'{"twin_id": "p1"}'


# ---------------------------------------------------------------- alerts


def alert_settings() -> Settings:
    s = Settings()
    rules = AlertRules(anomaly=KindRule(30.0, 60.0), escalate_after_s=0)
    return s.model_copy(update={"alerts": s.alerts.model_copy(update={"rules": rules})})


def run_alerts(s: Settings, msgs: Messages) -> tuple[list[Any], list[Alert], list[Any]]:
    out: list[Any] = []
    alerts: list[Alert] = []
    outputs: list[Any] = []
    sinks = flows.alerts.AlertSinks(TestingSink(out), TestingSink(alerts), TestingSink(outputs))
    run_main(flows.alerts.dataflow(s, msgs.source(), sinks, ticks=False))
    return out, alerts, outputs


def test_alerts_flow_opens_an_alert_once_a_score_stays_above_its_threshold() -> None:
    s = alert_settings()
    msgs = Messages()
    for sec in range(0, 100, 5):
        high = sec >= 20
        score = AnomalyScore("p1", T0 + timedelta(seconds=sec), 0.9 if high else 0.1, 0.5, high, {"temp": 1.0})
        msgs.add(s.alerts.anomalies_topic, "p1", encode(score))
    msgs.add(s.alerts.anomalies_topic, "p2", b"{oops")
    out, alerts, outputs = run_alerts(s, msgs)

    assert len(outputs) == 20  # every score for the database
    assert [(a.kind, a.event) for a in alerts] == [("anomaly", "opened")]
    assert alerts[0].opened_at == T0 + timedelta(seconds=50)  # above from 20 s, for min_duration_s = 30
    (on_kafka,) = on(out, s.alerts.topic)
    assert msgspec.json.decode(on_kafka.value, type=Alert) == alerts[0]
    (dead,) = on(out, s.topics.dlq)
    assert headers(dead)["dlq.reason"] == b"bad_json"


def test_the_alerts_flow_stores_only_model_outputs_their_producer_did_not_store() -> None:
    """Scores the pipeline flow wrote itself (STORED header) count for alerts but are not written again;
    the same scores without the header (the models flow, a model of one's own) are written."""
    s = alert_settings()
    for marked in (True, False):
        msgs = Messages()
        for sec in range(0, 100, 5):
            high = sec >= 20
            score = AnomalyScore("p1", T0 + timedelta(seconds=sec), 0.9 if high else 0.1, 0.5, high, {"temp": 1.0})
            msgs.add(s.alerts.anomalies_topic, "p1", encode(score), headers=STORED_HEADERS if marked else None)
        _, alerts, outputs = run_alerts(s, msgs)
        assert [(a.kind, a.event) for a in alerts] == [("anomaly", "opened")]
        assert len(flatten(outputs)) == (0 if marked else 20)


def test_a_desync_event_of_the_twin_flow_becomes_a_desync_alert(gate_files) -> None:
    s, key = gate_files
    twin_out, _, _ = run_twin(s, twin_input(s, key))
    msgs = Messages()
    for m in on(twin_out, s.twin.desync_topic):
        msgs.add(m.topic, m.key.decode(), m.value)
    out, alerts, _ = run_alerts(alert_settings().model_copy(update={"twin": s.twin}), msgs)

    assert [(a.twin_id, a.kind, a.severity, a.event) for a in alerts] == [("p1", "desync", "major", "opened")]
    assert alerts[0].evidence["desync"]["parameters"] == ["speed"]
    assert len(on(out, s.alerts.topic)) == 1 and not on(out, s.topics.dlq)


def test_a_twin_synchronized_again_ends_its_desync_alert(gate_files) -> None:
    s, key = gate_files
    msgs = twin_input(s, key)  # desynced from T0+1 s, escalated at T0+12 s
    for i in range(22, 28, 2):  # the machine reaches the desired 300 at T0+22 s
        msgs.add(s.topics.raw, "p1", reading("p1", i, T0 + timedelta(seconds=i), speed=300.0))
    twin_out, _, _ = run_twin(s, msgs)
    events = [msgspec.json.decode(m.value, type=DesyncEvent) for m in on(twin_out, s.twin.desync_topic)]
    assert [(e.kind, e.at) for e in events] == [
        ("desync", T0 + timedelta(seconds=12)),
        ("resynced", T0 + timedelta(seconds=22)),
    ]
    assert events[1].detail["duration_s"] == 21.0

    alert_msgs = Messages()
    for m in on(twin_out, s.twin.desync_topic):
        alert_msgs.add(m.topic, m.key.decode(), m.value)
    _, alerts, _ = run_alerts(alert_settings().model_copy(update={"twin": s.twin}), alert_msgs)
    assert [(a.kind, a.event, a.resolved_by) for a in alerts] == [
        ("desync", "opened", None),
        ("desync", "resolved", "auto"),
    ]


# ---------------------------------------------------------------- pipeline


def test_pipeline_flow_runs_ingest_reconciliation_and_models_on_one_input(gate_files) -> None:
    s, key = gate_files
    s = s.model_copy(update={"ml": Settings(ml={"anomaly": {"warmup": 5}}).ml})
    msgs = steady(twin_input(s, key), s, "p2").add(s.topics.raw, "p1", b"{not json")
    msgs.add(s.alerts.status_topic, "p2", b'{"twin_id": "p2"}')  # a bad status record: the models' only
    rows: list[Any] = []
    ingest_out: list[Any] = []
    twin_out: list[Any] = []
    models_out: list[Any] = []
    store = MemoryStore()
    sinks = flows.pipeline.PipelineSinks(
        flows.telemetry.TelemetrySinks(TestingSink(rows), TestingSink(ingest_out)),
        flows.twin.TwinSinks(TestingSink(twin_out), TestingSink([]), TestingSink([]), store),
        TestingSink(models_out),
        TestingSink(model_rows := []),
    )
    run_main(flows.pipeline.dataflow(s, msgs.source(), sinks, tail=False))

    assert sum(len(batch) for batch in rows) == 11 + 60  # every reading once, by the ingest part
    assert [headers(d)["dlq.reason"] for d in on(ingest_out, s.topics.dlq)] == [b"bad_json"]
    assert [orjson.loads(m.value)["kind"] for m in on(twin_out, s.twin.desync_topic)] == ["desync"]
    assert [headers(d)["dlq.reason"] for d in on(twin_out, s.topics.dlq)] == [b"schema"]  # the bad ack only
    scores = on(models_out, s.alerts.anomalies_topic)
    assert {m.key for m in scores} == {b"p2"}  # p1: too few readings to score
    # Their rows are written by the pipeline itself, and the messages say so (the alerts flow skips them).
    written = [r for batch in model_rows for r in batch if isinstance(r, AnomalyScore)]
    assert [decode(AnomalyScore, m.value) for m in scores] == written
    assert all(stored(m) for m in scores) and not any(stored(d) for d in on(models_out, s.topics.dlq))
    # The models part dead-letters the status record (not the bad reading, the ingest part's, nor the
    # bad ack, the reconciliation part's), through the one sink of its records.
    assert [(d.key, headers(d)["dlq.reason"]) for d in on(models_out, s.topics.dlq)] == [(b"p2", b"schema")]
