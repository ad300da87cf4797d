import math

import pytest

from connectors.config.security_files import load_policy
from operators.security.authorization import ALERT_ACTIONS, EVERY_TWIN, MODEL_ACTIONS, Policy, authorize
from twinflow.settings import ConfigError

POLICY = """
[[rule]]
name = "operators tune pumps of their own site"
subject = { roles = "operator" }
twin = { type = ["pump", "fan"] }
same = ["site"]
[rule.parameters]
rpm_setpoint = { min = 0, max = 3000 }
mode = { values = ["auto", "manual"] }
"pid.*" = { type = "number", min = -10, max = 10 }

[[rule]]
name = "engineers switch anything on or off"
subject = { roles = "engineer" }
twin = { type = "*" }
[rule.parameters]
enabled = { type = "bool" }
"""

OPS = {"id": "ann", "roles": ["operator"], "site": "north"}
PUMP = {"type": "pump", "site": "north"}


@pytest.fixture
def policy(tmp_path) -> Policy:
    f = tmp_path / "policy.toml"
    f.write_text(POLICY)
    return load_policy(f)


def upd(**values) -> dict:
    return {"twin_id": "pump-1", "values": values, "expected_version": 3, "author": "ann", "reason": "test"}


@pytest.mark.parametrize(
    ("subject", "twin", "values", "reason"),
    [
        (OPS, PUMP, {"rpm_setpoint": 1500, "mode": "auto"}, "allowed"),
        (OPS, PUMP, {"pid.kp": 2.5}, "allowed"),
        (OPS, PUMP, {"rpm_setpoint": 3000.5}, "out_of_range"),
        (OPS, PUMP, {"rpm_setpoint": -1}, "out_of_range"),
        (OPS, PUMP, {"rpm_setpoint": math.nan}, "bad_type"),
        (OPS, PUMP, {"rpm_setpoint": "1500"}, "bad_type"),
        (OPS, PUMP, {"rpm_setpoint": True}, "bad_type"),
        (OPS, PUMP, {"rpm_setpoint": {"$gt": 1}}, "bad_type"),
        (OPS, PUMP, {"mode": "turbo"}, "value_not_allowed"),
        (OPS, PUMP, {"rpm_setpoint": 10, "valve": 1}, "parameter_not_allowed"),
        (OPS, PUMP, {"enabled": False}, "parameter_not_allowed"),
        (OPS, {"type": "pump", "site": "south"}, {"rpm_setpoint": 10}, "no_matching_rule"),  # other site
        (OPS, {"type": "valve", "site": "north"}, {"rpm_setpoint": 10}, "no_matching_rule"),
        ({"id": "eve", "roles": ["guest"], "site": "north"}, PUMP, {"rpm_setpoint": 10}, "no_matching_rule"),
        ({"id": "x"}, PUMP, {"rpm_setpoint": 10}, "no_matching_rule"),  # no roles attribute
        (
            {"id": "bob", "roles": ["engineer", "operator"], "site": "north"},
            PUMP,
            {"enabled": True, "mode": "manual"},
            "allowed",
        ),
        ({"id": "bob", "roles": ["engineer"]}, {"type": "valve"}, {"enabled": 1}, "bad_type"),
        (OPS, None, {"rpm_setpoint": 10}, "unknown_twin"),
        (OPS, PUMP, {}, "empty_update"),
    ],
)
def test_decisions(policy, subject, twin, values, reason):
    d = policy.authorize(upd(**values), subject, twin)
    assert d.reason == reason, d.detail
    assert d.allowed == (reason == "allowed")
    assert d.detail


def test_objects_work_like_mappings(policy):
    class Update:
        twin_id, values = "pump-1", {"rpm_setpoint": 100}

    d = policy.authorize(Update(), OPS, PUMP)
    assert d.allowed and d.rules == ("operators tune pumps of their own site",)


def test_without_a_policy_everything_is_denied(tmp_path, monkeypatch):
    from twinflow.settings import settings

    monkeypatch.setenv("TWINFLOW_STACK__DIR", str(tmp_path))  # no development identity there
    settings.cache_clear()
    try:
        assert authorize(upd(rpm_setpoint=1), OPS, PUMP, policy=None).reason in {"no_policy"}
    finally:
        settings.cache_clear()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[[rule]]\nname = "a"\n[rule.parameters]\nx = { min = "low" }\n', "[[rule]] entry 1, [rule.parameters.x] min"),
        ('[[rule]]\nname = "a"\n[rule.parameters]\nx = { min = 5, max = 1 }\n', "entry 1, [rule.parameters.x]"),
        ('[[rule]]\nname = "a"\ncolour = "red"\n[rule.parameters]\nx = {}\n', "[[rule]] entry 1 colour: unknown key"),
        ('[[rule]]\nname = "a"\n', "grants nothing: add [rule.parameters]"),
        ('[[rule]]\nname = "a"\n[rule.parameters]\nx = { type = "date" }\n', "entry 1, [rule.parameters.x] type"),
        (
            '[[rule]]\nname = "a"\n[rule.parameters]\nx={}\n[[rule]]\nname = "a"\n[rule.parameters]\ny={}\n',
            "unique",
        ),
    ],
)
def test_policy_file_mistakes_name_file_and_field(tmp_path, text, field):
    f = tmp_path / "bad-policy.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_policy(f)
    assert str(f) in str(exc.value) and field in str(exc.value)


def test_the_configured_policy_file_is_used_and_reloaded(tmp_path):
    """The twin flow's gate reads security.policy_file through `reloading`: an edit takes effect."""
    import os

    from flows.twin import reloading

    f = tmp_path / "policy.toml"
    f.write_text(POLICY)
    policy = reloading(f, load_policy)
    assert authorize(upd(rpm_setpoint=10), OPS, PUMP, policy()).allowed
    f.write_text(POLICY.replace("max = 3000", "max = 5"))
    os.utime(f, ns=(1, 2))  # a different mtime, as an edit would give
    assert authorize(upd(rpm_setpoint=10), OPS, PUMP, policy()).reason == "out_of_range"
    assert authorize(upd(rpm_setpoint=10), OPS, PUMP, None).reason == "no_policy"


def test_policy_check_command(tmp_path):
    from typer.testing import CliRunner

    from twinflow.cli.main import app

    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(POLICY)
    bad.write_text('[[rule]]\nname = "a"\n[rule.parameters]\nx = { min = "low" }\n')
    runner = CliRunner()
    ok = runner.invoke(app, ["policy", "check", str(good)])
    assert ok.exit_code == 0 and "2 rules OK" in " ".join(ok.output.split()), ok.output  # (a long path wraps)
    res = runner.invoke(app, ["policy", "check", str(bad)])
    assert res.exit_code == 2 and "[[rule]] entry 1, [rule.parameters.x] min" in " ".join(res.output.split())


ALERT_RULES = """
[[rule]]
name = "maintenance acknowledges and shelves pump alarms of its site"
subject = { roles = "maintenance" }
twin = { type = "pump" }
same = ["site"]
alerts = ["ack", "shelve", "unshelve"]

[[rule]]
name = "leads redeliver every failed delivery"
subject = { roles = "lead" }
alerts = ["*"]
"""
MAINT = {"id": "max", "roles": ["maintenance"], "site": "north"}
LEAD = {"id": "lea", "roles": ["lead"]}


@pytest.mark.parametrize(
    ("subject", "twin", "action", "reason"),
    [
        (MAINT, PUMP, "shelve", "allowed"),
        (MAINT, PUMP, "out_of_service", "action_not_allowed"),
        (MAINT, {"type": "pump", "site": "south"}, "ack", "no_matching_rule"),  # another site
        (MAINT, {"type": "fan", "site": "north"}, "ack", "no_matching_rule"),
        (MAINT, EVERY_TWIN, "ack", "no_matching_rule"),  # a twin condition: never every twin
        (LEAD, EVERY_TWIN, "redeliver", "allowed"),
        (LEAD, PUMP, "in_service", "allowed"),
        (OPS, PUMP, "ack", "no_matching_rule"),  # setpoint rules grant no alert action
    ],
)
def test_alert_actions(tmp_path, subject, twin, action, reason):
    f = tmp_path / "policy.toml"
    f.write_text(POLICY + ALERT_RULES)
    assert load_policy(f).authorize_action("alerts", action, subject, twin).reason == reason


def test_alert_rules_grant_no_setpoint():
    """A rule with only `alerts` does not turn a subject's setpoint denial into another reason."""
    policy = Policy.from_dict({"rule": [{"name": "v", "subject": {"roles": "viewer"}, "alerts": ["ack"]}]})
    assert policy.authorize(upd(rpm_setpoint=1), {"roles": ["viewer"]}, PUMP).reason == "no_matching_rule"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[[rule]]\nname = "a"\nalerts = ["snooze"]\n', "[[rule]] entry 1 alerts[0]"),
        ('[[rule]]\nname = "a"\nalerts = "ack"\n', "[[rule]] entry 1 alerts"),
        ('[[rule]]\nname = "a"\nalerts = []\n', "grants nothing: add [rule.parameters], modes = [...], alerts"),
        ('[[rule]]\nname = "a"\nmodels = ["retrain"]\n', "[[rule]] entry 1 models[0]"),
    ],
)
def test_alert_rule_mistakes_name_file_and_field(tmp_path, text, field):
    f = tmp_path / "bad-policy.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_policy(f)
    assert str(f) in str(exc.value) and field in str(exc.value), exc.value


def test_an_earlier_generated_dev_policy_grants_operators_alert_actions_only_while_unchanged(tmp_path):
    """`twinflow stack up` of an earlier version wrote a policy without alert rules: read as the current one
    for alert actions while byte for byte unchanged; once edited it is the user's own (no alert rule: denied)."""
    from twinflow.authority import load_action_policy
    from twinflow.stack.identity import DEV_POLICY, EARLIER_DEV_POLICIES

    f = tmp_path / "policy.toml"
    root = {"id": "root", "roles": ["operator", "engineer"]}
    for text in (DEV_POLICY, EARLIER_DEV_POLICIES[0]):
        f.write_text(text)
        policy = load_action_policy(f)
        assert all(policy.authorize_action("alerts", a, root, EVERY_TWIN).allowed for a in ALERT_ACTIONS)
        assert all(policy.authorize_action("models", a, root, {"id": "p1"}).allowed for a in MODEL_ACTIONS)
    f.write_text(EARLIER_DEV_POLICIES[0] + "# mine now\n")
    assert load_action_policy(f).authorize_action("alerts", "ack", root, {"id": "p1"}).reason == "no_matching_rule"


def test_no_audit_no_action(tmp_path):
    """The decision cannot be appended to the audit chain (the database is unreachable): 503, nothing done."""
    from twinflow.authority import ActionRefused, authorize
    from twinflow.settings import Settings

    (tmp_path / "subjects.toml").write_text('[subject.lea]\nroles = ["lead"]\n')
    (tmp_path / "policy.toml").write_text(ALERT_RULES)
    s = Settings(
        postgres={"host": "127.0.0.1", "port": 1},
        security={"subjects_file": tmp_path / "subjects.toml", "policy_file": tmp_path / "policy.toml"},
    )
    with pytest.raises(ActionRefused) as exc:
        authorize(s, "lea", "ack", "p1", {"alert_id": "al-1"})
    assert exc.value.status == 503 and "could not be audited" in exc.value.detail
