"""The twin flow over real Kafka and PostgreSQL: history, windows, late data, replay idempotency."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from bytewax.testing import run_main
from confluent_kafka.admin import AdminClient, ConfigResource

from connectors.kafka.clients import client_config
from flows.twin import build_flow
from tests.twin_fixtures import delete_topics, twin_db, twin_settings_for  # noqa: F401
from tests.twin_kafka import dev_subject, envelope, produce, produce_signed, query, read_all, versions
from twinflow.cli.twin import load_state
from twinflow.settings import Settings

pytestmark = pytest.mark.integration


def topic_config(s: Settings, topic: str) -> dict[str, str]:
    admin = AdminClient(client_config(s))
    (fut,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in fut.result(timeout=30).items()}


POLICY = {
    "defaults": {
        "deadband_pct": 0.0,  # every change of speed is a version (the test counts them)
        "parameters": {"speed": {"strategy": "digital_wins", "tolerance": 2.0, "hold_time_s": 0.5}},
    }
}


@pytest.fixture
def s(twin_db: Settings) -> Iterator[Settings]:  # noqa: F811
    settings = twin_settings_for(twin_db, POLICY, windows_s=[1.0, 60.0], allowed_lateness_s=2.0)
    yield settings
    delete_topics(settings)


def test_flow_writes_history_windows_late_records_and_a_replay_adds_nothing(s: Settings) -> None:
    twin = f"pump-{uuid.uuid4().hex[:8]}"
    t0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    readings = [(t0 + timedelta(seconds=0.25 * i), i, {"speed": 100.0 + i, "temp": 20.0}) for i in range(40)]
    late = (t0 - timedelta(seconds=30), 999, {"speed": 1.0, "temp": 1.0})  # far behind the watermark
    msgs = [(twin.encode(), envelope(twin, ts, seq, r)) for ts, seq, r in readings]
    msgs.insert(30, (twin.encode(), envelope(twin, *late)))
    other = f"fan-{uuid.uuid4().hex[:8]}"  # telemetry only: its clock is the reading time
    msgs += [(other.encode(), envelope(other, ts, seq, r)) for ts, seq, r in readings]
    msgs.append((twin.encode(), b"{not json"))  # the telemetry flow dead-letters this; here it is skipped
    produce(s, s.topics.raw, msgs)
    produce(s, s.twin.desired_topic, [(twin.encode(), b'{"twin_id": "' + twin.encode() + b'", "values": {}}')])
    run_main(build_flow(s, tail=False))
    # A signed request once the twin exists; the flow runs again without recovery: it resumes the twin
    # from the database (versions continue, the readings it reads again make no version).
    produce_signed(s, twin, {"speed": 300.0}, reason="integration")
    run_main(build_flow(s, tail=False))

    first = versions(s, twin)
    assert first == list(range(1, len(first) + 1)) and len(first) >= 41  # 40 changes of speed + desired
    rows = query(s, "SELECT * FROM twin_state_history WHERE twin_id = %s ORDER BY version", (twin,))
    assert rows[-1]["reported"]["speed"]["value"] == 139.0
    assert rows[-1]["desired"]["speed"]["value"] == 300.0
    assert rows[-1]["status"] == "desynced" and rows[-1]["conflicts"] == ["speed"]
    desired_rows = [r for r in rows if r["change"]["cause"] == "desired"]
    assert desired_rows and desired_rows[0]["change"]["author"] == dev_subject()
    assert desired_rows[0]["change"]["reason"] == "integration"

    windows = query(
        s,
        "SELECT window_size, window_start, count, min, max, version FROM telemetry_windows "
        "WHERE twin_id = %s AND sensor = 'speed' ORDER BY window_size, window_start",
        (twin,),
    )
    assert sum(w["count"] for w in windows if w["window_size"] == "1s") == 40
    assert sum(w["count"] for w in windows if w["window_size"] == "1m") == 40
    assert min(w["min"] for w in windows) == 100.0  # the late reading (1.0) is in no window

    late_records = read_all(s, s.twin.late_topic)
    # (both runs read the late reading: late records are at least once)
    assert sorted({v["sensor"] for _, v in late_records}) == ["speed", "temp"]
    assert all(v["seq"] == 999 and v["reason"] == "beyond_allowed_lateness" for _, v in late_records)
    commands = [v for _, v in read_all(s, s.twin.commands_topic)]
    assert [(c["parameter"], c["value"]) for c in commands][:1] == [("speed", 300.0)]
    dead = read_all(s, s.topics.dlq)
    # the desired update without values or mode, with its reason in the headers (read by both runs)
    assert dead and all(d[0] == twin.encode() for d in dead)
    assert topic_config(s, s.twin.state_topic)["cleanup.policy"] == "compact"
    state = [v for k, v in read_all(s, s.twin.state_topic) if k == twin.encode()]
    assert [v["version"] for v in state] == first  # twin.state carries every version, in order

    as_of = load_state(s, other, t0 + timedelta(seconds=2.1))
    assert as_of is not None and as_of["reported"]["speed"]["value"] == 108.0
    assert as_of["event_time"] == t0 + timedelta(seconds=2) and as_of["version"] == 9
    assert load_state(s, other, t0 - timedelta(minutes=5)) is None
    assert load_state(s, other)["version"] == 40

    history_count = query(s, "SELECT count(*) AS n FROM twin_state_history WHERE twin_id = %s", (twin,))[0]["n"]
    quality_count = query(s, "SELECT count(*) AS n FROM twin_sync_quality WHERE twin_id = %s", (twin,))[0]["n"]
    window_snapshot = query(s, "SELECT * FROM telemetry_windows WHERE twin_id = %s ORDER BY 1,2,3,4", (twin,))

    run_main(build_flow(s, tail=False))  # a replay over the same input

    again = versions(s, twin)
    assert again == list(range(1, len(again) + 1))
    assert query(s, "SELECT count(*) AS n FROM twin_state_history WHERE twin_id = %s", (twin,))[0]["n"] == max(
        history_count, len(again)
    )
    assert query(s, "SELECT count(*) AS n FROM twin_sync_quality WHERE twin_id = %s", (twin,))[0]["n"] == quality_count
    replayed = query(s, "SELECT * FROM telemetry_windows WHERE twin_id = %s ORDER BY 1,2,3,4", (twin,))
    strip = ("updated_at",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in replayed] == [
        {k: v for k, v in r.items() if k not in strip} for r in window_snapshot
    ]


def test_with_ingest_on_the_twin_flow_also_writes_telemetry_and_dead_letters(twin_db: Settings) -> None:  # noqa: F811
    s = twin_settings_for(twin_db, ingest=True)
    try:
        twin = f"ing-{uuid.uuid4().hex[:8]}"
        t0 = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
        msgs = [(twin.encode(), envelope(twin, t0 + timedelta(seconds=i), i, {"a": i, "b": -i})) for i in range(5)]
        produce(s, s.topics.raw, [*msgs, (twin.encode(), b"{oops")])
        run_main(build_flow(s, tail=False))
        rows = query(s, "SELECT sensor, count(*) AS n FROM telemetry WHERE twin_id = %s GROUP BY sensor", (twin,))
        assert {r["sensor"]: r["n"] for r in rows} == {"a": 5, "b": 5}
        assert read_all(s, s.topics.dlq, decode=False) == [(twin.encode(), b"{oops")]
        assert versions(s, twin) == [1, 2, 3, 4, 5]
    finally:
        delete_topics(s)


def test_a_lasting_desync_reaches_the_alerts_flow_through_twin_desync(twin_db: Settings) -> None:  # noqa: F811
    """The twin flow writes its escalation to twin.desync; the alerts flow opens a desync alert from it
    and writes alert versions only to twin.alerts (each topic one record type, no read-back)."""
    import flows.alerts
    from connectors.kafka.clients import alert_topic_specs, ensure_topics
    from operators.records.alerts import Alert
    from operators.records.twin import DesyncEvent

    policy = {"defaults": {"strategy": "digital_wins", "tolerance": 1.0, "hold_time_s": 0, "max_desync_time_s": 10}}
    s = twin_settings_for(twin_db, policy)
    sfx = s.topics.raw.rsplit(".", 1)[1]
    names = ("topic", "actions_topic", "anomalies_topic", "failures_topic", "forecasts_topic", "status_topic")
    alerts = s.alerts.model_copy(update={f: f"test.{f}.{sfx}" for f in (*names, "suppression_topic")})
    s = s.model_copy(update={"alerts": alerts})
    ensure_topics(s, alert_topic_specs(s))
    try:
        twin = f"dsy-{uuid.uuid4().hex[:8]}"
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        produce(s, s.topics.raw, [(twin.encode(), envelope(twin, start, 1, {"speed": 100.0}))])
        run_main(build_flow(s, tail=False))  # the twin exists
        asked = datetime.now(UTC)
        produce_signed(s, twin, {"speed": 300.0}, reason="desync test")
        run_main(build_flow(s, tail=False))  # desired 300 applied: desynced from now on
        later = [(asked + timedelta(seconds=2 * i), 1 + i, {"speed": 100.0}) for i in range(1, 12)]
        produce(s, s.topics.raw, [(twin.encode(), envelope(twin, ts, seq, r)) for ts, seq, r in later])
        run_main(build_flow(s, tail=False))  # the machine stays at 100 for 22 s: escalation after 10 s

        events = [msgspec.json.decode(v, type=DesyncEvent) for k, v in read_all(s, s.twin.desync_topic, decode=False)]
        assert [(e.twin_id, e.kind) for e in events if e.kind == "desync"] == [(twin, "desync")]
        run_main(flows.alerts.build_flow(s, tail=False))
        versions_out = [msgspec.json.decode(v, type=Alert) for _, v in read_all(s, s.alerts.topic, decode=False)]
        assert [(a.twin_id, a.kind, a.event) for a in versions_out] == [(twin, "desync", "opened")]
        row = query(s, "SELECT kind, severity, state FROM alerts WHERE twin_id = %s", (twin,))
        assert row == [{"kind": "desync", "severity": "major", "state": "open"}]
        assert read_all(s, s.topics.dlq) == []  # the alerts flow took the twin flow's record as it is
    finally:
        from confluent_kafka.admin import AdminClient

        AdminClient(client_config(s)).delete_topics([t.name for t in alert_topic_specs(s)])
        delete_topics(s)
