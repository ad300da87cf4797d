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


ALERT_POLICY = """
[[rule]]
name = "operators acknowledge"
subject = { roles = "operator" }
alerts = ["ack"]

[[rule]]
name = "operators set speeds (no alert action)"
subject = { roles = "operator" }
[rule.parameters]
speed = { type = "number" }
"""


def test_actions_are_authorized_for_the_cli_subject_and_audited(cli_settings, tmp_path, monkeypatch):
    """`twinflow alerts ack|shelve|resolve|redeliver` are decided by the policy file's alert rules for the CLI's
    own subject (security.subject): a viewer is denied (exit 3, nothing published, the alert unchanged), an
    operator may acknowledge but not resolve; every decision is in the audit chain, which stays intact."""
    s = cli_settings
    subjects = '[subject.dana]\nroles = ["viewer"]\n[subject.olga]\nroles = ["operator"]\n'
    (tmp_path / "subjects.toml").write_text(subjects)
    (tmp_path / "policy.toml").write_text(ALERT_POLICY)
    monkeypatch.setenv("TWINFLOW_SECURITY__SUBJECTS_FILE", str(tmp_path / "subjects.toml"))
    monkeypatch.setenv("TWINFLOW_SECURITY__POLICY_FILE", str(tmp_path / "policy.toml"))
    twin = f"cli-auth-{uuid.uuid4().hex[:8]}"
    alert = an_alert(twin)
    writer = AlertSink(s.postgres.conninfo()).open()
    writer.write([alert])
    writer.close()
    run = CliRunner().invoke

    monkeypatch.setenv("TWINFLOW_SECURITY__SUBJECT", "dana")
    denied = run(app, ["alerts", "ack", alert.alert_id])
    assert denied.exit_code == 3 and "denied: no_matching_rule" in denied.output, denied.output
    shelve = run(app, ["alerts", "shelve", alert.alert_id, "--for", "10m", "--reason", "noisy", "--by", "dana"])
    assert shelve.exit_code == 3 and "no_matching_rule" in shelve.output, shelve.output

    monkeypatch.setenv("TWINFLOW_SECURITY__SUBJECT", "olga")
    resolve = run(app, ["alerts", "resolve", alert.alert_id])
    assert resolve.exit_code == 3 and "denied: action_not_allowed" in resolve.output, resolve.output
    every = run(app, ["alerts", "redeliver", "--failed"])
    assert every.exit_code == 3 and "action_not_allowed" in every.output, every.output
    acked = run(app, ["alerts", "ack", alert.alert_id])
    assert acked.exit_code == 0 and "acknowledged by olga" in acked.output, acked.output

    actions = [msgspec.json.decode(r.value, type=AlertAction) for r in read_topic(s, s.alerts.actions_topic)]
    assert [(x.alert_id, x.action, x.by) for x in actions] == [(alert.alert_id, "ack", "olga")]
    with psycopg.connect(s.postgres.conninfo()) as db:
        state = db.execute("SELECT state, acked_by FROM alerts WHERE alert_id = %s", (alert.alert_id,)).fetchone()
        audit = db.execute(
            "SELECT actor, twin_id, new->>'action', decision, reason FROM desired_audit WHERE actor IN ('dana', 'olga')"
            " AND id >= (SELECT min(id) FROM desired_audit WHERE new->>'alert_id' = %s) ORDER BY id",
            (alert.alert_id,),
        ).fetchall()
    assert state == ("acknowledged", "olga")
    assert audit == [
        ("dana", twin, "alert.ack", "deny", "no_matching_rule"),
        ("dana", twin, "alert.shelve", "deny", "no_matching_rule"),
        ("olga", twin, "alert.resolve", "deny", "action_not_allowed"),
        ("olga", "*", "alert.redeliver", "deny", "action_not_allowed"),
        ("olga", twin, "alert.ack", "allow", "allowed"),
    ]
    verified = run(app, ["audit", "verify"])
    assert verified.exit_code == 0 and "audit chain intact" in verified.output, verified.output


def test_no_alert_rule_denies_every_action(cli_settings, tmp_path, monkeypatch):
    """A policy of the user's own without `alerts = [...]`: every alert action is denied (no_matching_rule),
    and `twinflow policy check` says so."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nname = "speeds"\nsubject = { roles = "operator" }\nparameters = { speed = {} }\n')
    (tmp_path / "subjects.toml").write_text('[subject.oleg]\nroles = ["operator"]\n')
    monkeypatch.setenv("TWINFLOW_SECURITY__SUBJECTS_FILE", str(tmp_path / "subjects.toml"))
    monkeypatch.setenv("TWINFLOW_SECURITY__POLICY_FILE", str(policy))
    monkeypatch.setenv("TWINFLOW_SECURITY__SUBJECT", "oleg")
    alert = an_alert(f"cli-none-{uuid.uuid4().hex[:8]}")
    writer = AlertSink(cli_settings.postgres.conninfo()).open()
    writer.write([alert])
    writer.close()
    run = CliRunner().invoke
    denied = run(app, ["alerts", "ack", alert.alert_id, "--by", "oleg"])
    assert denied.exit_code == 3 and "no_matching_rule" in denied.output, denied.output
    checked = run(app, ["policy", "check", str(policy)])
    assert checked.exit_code == 0 and "no rule grants alert actions" in " ".join(checked.output.split())
