"""The [twin.policy] section: layering per type and twin, and errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from operators.twin.sync_strategy import Strategy, TwinPolicy
from twinflow.settings import ConfigError, load_settings

POLICY = """
[twin.policy.defaults]
hold_time_s = 2.0
max_desync_time_s = 60

[twin.policy.types.pump]
match = ["pump-*"]
tolerance = 1.0
max_desync_time_s = 30

[twin.policy.types.pump.parameters.speed]
strategy = "digital_wins"
tolerance = 5.0
critical = true

[twin.policy.twins."pump-007"]
max_desync_time_s = 10

[twin.policy.twins."pump-007".parameters.speed]
strategy = "merge"

[twin.policy.twins."fan-1"]
type = "pump"
"""


def settings_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str):
    path = tmp_path / "twinflow.toml"
    path.write_text(text)
    monkeypatch.setenv("TWINFLOW_CONFIG", str(path))
    return load_settings(), path


def test_rules_are_layered_defaults_type_parameter_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, _ = settings_from(tmp_path, monkeypatch, POLICY)
    policy = s.twin.policy
    pump = policy.rules_for("pump-001")
    assert pump.twin_type == "pump" and pump.max_desync_time_s == 30
    speed = pump.param("speed")
    assert (speed.strategy, speed.tolerance, speed.clear_tolerance, speed.critical, speed.hold_time_s) == (
        Strategy.DIGITAL_WINS,
        5.0,
        2.5,
        True,
        2.0,
    )
    assert pump.param("temp").strategy is Strategy.PHYSICAL_WINS and pump.param("temp").tolerance == 1.0
    p7 = policy.rules_for("pump-007")
    assert p7.param("speed").strategy is Strategy.MERGE and p7.param("speed").critical is True
    assert p7.max_desync_time_s == 10
    assert policy.rules_for("fan-1").param("speed").strategy is Strategy.DIGITAL_WINS
    other = policy.rules_for("valve-1")
    assert other.twin_type is None and other.param("speed").strategy is Strategy.PHYSICAL_WINS
    assert other.simulation_sources == frozenset({"whatif"})


@pytest.mark.parametrize(
    ("extra", "field", "hint"),
    [
        (
            '[twin.policy.types.pump.parameters.flow]\nstrategy = "digital"\n',
            "[twin.policy.types.pump.parameters.flow] strategy",
            "digital_wins",
        ),
        (
            "[twin.policy.types.pump.parameters.flow]\ntolerence = 1\n",
            "[twin.policy.types.pump.parameters.flow] tolerence",
            "unknown key, did you mean `tolerance`?",
        ),
        (
            "[twin.policy.types.pump.parameters.flow]\nclear_tolerance = 9\n",
            "types.pump.parameters.flow",
            "clear_tolerance 9.0 must be ≤ tolerance 1.0",
        ),
        ('[twin.policy.twins."x-1"]\ntype = "pmup"\n', "twins.x-1.type", "not a defined type (known: pump)"),
        (
            "",
            "[twin.policy.defaults] hold_time_s",
            "greater than or equal to 0",
        ),
    ],
)
def test_policy_mistakes_name_the_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, field: str, hint: str
) -> None:
    text = (POLICY if extra else POLICY.replace("hold_time_s = 2.0", "hold_time_s = -1")) + extra
    with pytest.raises(ConfigError) as err:
        settings_from(tmp_path, monkeypatch, text)
    message = str(err.value)
    assert str(tmp_path / "twinflow.toml") in message
    assert field in message and hint in message


def test_the_default_policy_never_drives_a_machine() -> None:
    assert TwinPolicy().rules_for("anything").param("x").strategy is Strategy.PHYSICAL_WINS


def test_window_sizes_must_be_positive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"\[twin\] windows_s\[1\]: Input should be greater than 0"):
        settings_from(tmp_path, monkeypatch, "[twin]\nwindows_s = [1, 0]\n")


CONNECTIVITY = """
[twin]
offline_after_s = 120
offline_alert_after_s = 30

[twin.policy.types.plc]
match = ["plc-*"]
offline_after_s = 10

[twin.policy.types.battery]
match = ["bat-*"]
offline_after_s = 2700
offline_alert_after_s = 600

[twin.policy.twins."bat-7"]
offline_after_s = 0

[twin.policy.twins."gw-1"]
type = "plc"
offline_alert_after_s = 5
"""


def test_connectivity_timeouts_are_layered_fleet_type_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from operators.twin.reconcile import Reconciler

    s, _ = settings_from(tmp_path, monkeypatch, CONNECTIVITY)
    r = Reconciler(s.twin.policy, s.twin.offline_after_s, s.twin.offline_alert_after_s)
    effective = {
        t: (r.rules(t).offline_after_s, r.rules(t).offline_alert_after_s, r.rules(t).offline_after_key)
        for t in ("plc-1", "bat-1", "bat-7", "gw-1", "valve-1")
    }
    assert effective == {
        "plc-1": (10.0, 30.0, "twin.policy.types.plc.offline_after_s"),
        "bat-1": (2700.0, 600.0, "twin.policy.types.battery.offline_after_s"),
        "bat-7": (0.0, 600.0, "twin.policy.twins.bat-7.offline_after_s"),  # this one twin: never by silence
        "gw-1": (10.0, 5.0, "twin.policy.types.plc.offline_after_s"),
        "valve-1": (120.0, 30.0, "twin.offline_after_s"),  # no type: the fleet-wide [twin] values
    }
    # Without [twin] values: the built-in fleet defaults (off, alert after 60 s).
    assert (TwinPolicy().rules_for("x").offline_after_s, TwinPolicy().rules_for("x").offline_alert_after_s) == (0, 60)
    assert r.rules("plc-1") is r.rules("plc-1")  # resolved once per twin, not per reading


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        (
            "[twin.policy.types.plc]\noffline_after_s = -10\n",
            "[twin.policy.types.plc] offline_after_s",
            "greater than or equal to 0",
        ),
        (
            '[twin.policy.twins."plc-1"]\noffline_alert_after_s = -1\n',
            "[twin.policy.twins.plc-1] offline_alert_after_s",
            "greater than or equal to 0",
        ),
        (
            '[twin.policy.twins."plc-1"]\noffline_afer_s = 5\n',
            "[twin.policy.twins.plc-1] offline_afer_s",
            "unknown key, did you mean `offline_after_s`?",
        ),
        (
            "[twin.policy.defaults]\noffline_after_s = 5\n",
            "[twin.policy.defaults]",
            "`offline_after_s` is fleet-wide in [twin] (offline_after_s = ...), not in [twin.policy.defaults]",
        ),
        (
            "[twin.policy.types.plc.parameters.speed]\noffline_after_s = 5\n",
            "[twin.policy.types.plc.parameters.speed] offline_after_s",
            "unknown key",
        ),
    ],
)
def test_connectivity_timeout_mistakes_name_the_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, field: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from(tmp_path, monkeypatch, text)
    message = str(err.value)
    assert str(tmp_path / "twinflow.toml") in message
    assert field in message and hint in message
