"""`twinflow alerts list | ack | resolve` against the real database and Kafka."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest
from typer.testing import CliRunner

from connectors.kafka.clients import alert_topic_specs, ensure_topics
from connectors.postgres.alert_sinks import AlertSink
from connectors.postgres.migrate import migrate
from operators.records.alerts import Alert, AlertAction
from tests.kafka_helpers import read_topic
from twinflow.cli.main import app

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_settings(settings, monkeypatch):
    topic = f"test.actions.{uuid.uuid4().hex[:8]}"
    s = settings.model_copy(update={"alerts": settings.alerts.model_copy(update={"actions_topic": topic})})
    ensure_topics(s, [t for t in alert_topic_specs(s) if t.name == topic])
    migrate(s.postgres.conninfo(), s.postgres.timescaledb)
    monkeypatch.setenv("TWINFLOW_ALERTS__ACTIONS_TOPIC", topic)
    return s


def an_alert(twin: str, kind: str = "anomaly", state: str = "open") -> Alert:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    return Alert(
        alert_id=f"al-{uuid.uuid4().hex[:12]}", twin_id=twin, kind=kind, state=state, severity="major",
        version=1, event="opened", opened_at=t, updated_at=t, summary=f"{twin}: test alert",
    )  # fmt: skip


def test_list_ack_resolve_and_clear_errors(cli_settings):
    s = cli_settings
    twin = f"cli-{uuid.uuid4().hex[:8]}"
    a1, a2 = an_alert(twin), an_alert(twin, "failure")
    writer = AlertSink(s.postgres.conninfo()).open()
    writer.write([a1, a2])
    writer.close()
    run = CliRunner().invoke

    listed = run(app, ["alerts", "list", "--twin", twin, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines() if line.strip()]
    assert {(r["alert_id"], r["state"]) for r in rows} == {(a1.alert_id, "open"), (a2.alert_id, "open")}
    table = run(app, ["alerts", "list", "--twin", twin])  # 80 columns: a block per alert, the summary whole
    assert table.exit_code == 0 and "2 alert(s)" in table.output
    assert [line.strip() for line in table.output.splitlines()].count(f"{twin}: test alert") == 2, table.output

    assert run(app, ["alerts", "ack", a1.alert_id, "--by", "carol"]).exit_code == 0
    again = run(app, ["alerts", "ack", a1.alert_id, "--by", "dave"])
    assert again.exit_code == 0 and "already acknowledged by carol" in again.output
    done = run(app, ["alerts", "resolve", a2.alert_id, "--by", "erin"])
    assert done.exit_code == 0 and "resolved by erin" in done.output

    with psycopg.connect(s.postgres.conninfo()) as db:
        got = db.execute(
            "SELECT alert_id, state, acked_by, resolved_by FROM alerts WHERE twin_id = %s ORDER BY kind",
            (twin,),
        ).fetchall()
    assert got == [(a1.alert_id, "acknowledged", "carol", None), (a2.alert_id, "resolved", None, "erin")]

    actions = [msgspec.json.decode(r.value, type=AlertAction) for r in read_topic(s, s.alerts.actions_topic)]
    assert [(x.alert_id, x.twin_id, x.action, x.by) for x in actions] == [
        (a1.alert_id, twin, "ack", "carol"),
        (a2.alert_id, twin, "resolve", "erin"),
    ]
    assert all(r.key == twin.encode() for r in read_topic(s, s.alerts.actions_topic))

    resolved = run(app, ["alerts", "ack", a2.alert_id, "--by", "frank"])
    assert resolved.exit_code == 1 and "already resolved" in resolved.output
    unknown = run(app, ["alerts", "ack", "al-doesnotexist", "--by", "frank"])
    assert unknown.exit_code == 1 and "no alert 'al-doesnotexist'" in unknown.output
    bad = run(app, ["alerts", "list", "--state", "sleeping"])
    assert bad.exit_code == 2 and "--state 'sleeping'" in bad.output
    assert run(app, ["alerts", "list", "--state", "resolved", "--twin", twin]).output.count(a2.alert_id) == 1
    normal = run(app, ["alerts", "list", "--state", "normal", "--twin", twin]).output  # ISA-18.2's name for resolved
    assert normal.count(a2.alert_id) == 1 and a1.alert_id not in normal
    assert run(app, ["alerts", "maintenance", twin, "sometimes"]).exit_code == 2
    bad_twin = run(app, ["alerts", "maintenance", "no spaces allowed", "on"])
    assert bad_twin.exit_code == 2 and "twin_id" in bad_twin.output
