"""Configuration mistakes: unknown keys at any depth, did-you-mean, syntax errors, environment typos.

Every message names where the mistake is (the file or the variable), the section, the key and the
fix; the command line prints it with exit code 2 and no traceback.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from connectors.bridges.mapping.loading import MappingError, load_mapping
from connectors.bridges.mapping.schema import Mapping
from connectors.config.security_files import load_policy, load_twin_registry
from operators.security.authorization import PolicyFile
from operators.telemetry.registry import RegistryFile
from twinflow.settings import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- one rule everywhere
def _reachable(t: Any, found: dict[str, Any]) -> None:
    """Every pydantic model and dataclass reachable from type ``t`` through its fields."""
    for arg in get_args(t):
        _reachable(arg, found)
    origin = get_origin(t)
    if origin is not None or not isinstance(t, type) or t.__qualname__ in found:
        return
    if issubclass(t, BaseModel):
        found[t.__qualname__] = t
        for f in t.model_fields.values():
            _reachable(f.annotation, found)
    elif dataclasses.is_dataclass(t):
        found[t.__qualname__] = t
        for hint in typing.get_type_hints(t).values():
            _reachable(hint, found)


def _extra(t: Any) -> str | None:
    config = t.model_config if issubclass(t, BaseModel) else getattr(t, "__pydantic_config__", {})
    return config.get("extra")


def test_every_user_written_model_rejects_unknown_keys() -> None:
    found: dict[str, Any] = {}
    for root in (Settings, Mapping, PolicyFile, RegistryFile):
        _reachable(root, found)
    # A registry pattern's keys other than `match` are the twins' attributes (type, site, …).
    lenient = {name for name, t in found.items() if _extra(t) != "forbid"} - {"_Pattern"}
    assert len(found) > 30
    assert not lenient, f"these accept unknown keys silently; inherit operators.strict.StrictModel: {lenient}"


# ----------------------------------------------------------------------------- the settings file
def _load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> str:
    path = tmp_path / "twinflow.toml"
    path.write_text(text)
    monkeypatch.setenv("TWINFLOW_CONFIG", str(path))
    with pytest.raises(ConfigError) as err:
        load_settings()
    return str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[postgres]\nhostname = "db"\n', "[postgres] hostname: unknown key, did you mean `host`?"),
        ('[kafka]\nbootstrap = "k:9092"\n', "[kafka] bootstrap: unknown key, did you mean `bootstrap_servers`?"),
        ('[alerts]\nwebhook = "http://x"\n', "[alerts] webhook: unknown key, did you mean `webhook_url`?"),
        (
            "[alerts.rules.anomaly]\nmin_duration = 30\n",
            "[alerts.rules.anomaly] min_duration: unknown key, did you mean `min_duration_s`?",
        ),
        ("[bridge.buffer]\nspil_dir = '/x'\n", "[bridge.buffer] spil_dir: unknown key, did you mean `spill_dir`?"),
        (
            "[twin.policy.types.pump.parameters.speed]\ntolerence = 5\n",
            "[twin.policy.types.pump.parameters.speed] tolerence: unknown key, did you mean `tolerance`?",
        ),
        (
            '[[ml.limits]]\nsensor = "temp_c"\nhigh = 90\n[[ml.limits]]\nsensr = "vib"\nhigh = 7\n',
            "[[ml.limits]] entry 2 sensr: unknown key, did you mean `sensor`?",
        ),
        ("[postgress]\nhost = 'db'\n", "[postgress]: unknown section, did you mean `postgres`?"),
    ],
    ids=["depth-1", "kafka", "alerts", "depth-3", "depth-2", "depth-5", "array-of-tables", "section"],
)
def test_unknown_keys_in_the_file_name_file_section_key_and_a_close_known_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    message = _load(tmp_path, monkeypatch, text)
    assert f"{tmp_path / 'twinflow.toml'}: {expected}" in message, message
    assert "Rename it to" in message  # the fix


def test_without_a_close_key_the_known_keys_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load(tmp_path, monkeypatch, "[mqtt]\nxyz = 1\n")
    assert "[mqtt] xyz: unknown key. Remove it (known here: host, port, topic" in message, message
    assert "did you mean" not in message


def test_every_mistake_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load(tmp_path, monkeypatch, '[postgres]\nhostname = "db"\n[mqtt]\nqos = 3\n')
    assert "[postgres] hostname: unknown key" in message
    assert (
        "[mqtt] qos: Input should be less than or equal to 2. Fix it in the file, or set TWINFLOW_MQTT__QOS." in message
    )


def test_a_check_of_a_whole_section_suggests_no_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[twin.policy.types.pump.parameters.flow]\nstrategy = "merge"\ntolerance = 1.0\nclear_tolerance = 9.0\n'
    message = _load(tmp_path, monkeypatch, text)
    assert "clear_tolerance 9.0 must be ≤ tolerance 1.0" in message and message.rstrip().endswith("Fix it in the file.")
    assert "TWINFLOW_" not in message  # a table cannot be set from one variable


def test_a_syntax_error_names_file_line_and_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load(tmp_path, monkeypatch, '[kafka]\nextra = { "acks" = "all" }\nbootstrap_servers = k1:9092\n')
    path = tmp_path / "twinflow.toml"
    assert message.startswith(f"configuration file {path}, line 3, column 21: not valid TOML: Invalid value")
    assert "    bootstrap_servers = k1:9092\n" + " " * 24 + "^" in message
    assert 'strings need quotes: key = "value"' in message


def test_an_unclosed_table_at_the_end_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = _load(tmp_path, monkeypatch, "[kafka\n")
    assert str(tmp_path / "twinflow.toml") in message and "not valid TOML" in message and "line 1" in message


# ----------------------------------------------------------------------------- the environment
def test_an_unknown_nested_variable_names_the_variable_and_the_right_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINFLOW_POSTGRES__HOSTNAME", "db")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert (
        "TWINFLOW_POSTGRES__HOSTNAME (environment): [postgres] hostname: unknown key, did you mean `host`? "
        "Use TWINFLOW_POSTGRES__HOST, or unset it." in str(err.value)
    )


def test_an_unknown_deep_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINFLOW_ALERTS__RULES__ANOMALY__MIN_DURATION", "10")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "[alerts.rules.anomaly] min_duration: unknown key" in str(err.value)
    assert "Use TWINFLOW_ALERTS__RULES__ANOMALY__MIN_DURATION_S" in str(err.value)


def test_a_variable_of_an_unknown_section_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINFLOW_POSTGRESS__HOST", "db")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "TWINFLOW_POSTGRESS__HOST (environment): unknown section `postgress`, did you mean `postgres`?" in str(
        err.value
    )
    assert "Use TWINFLOW_POSTGRES__HOST" in str(err.value)


def test_other_tools_variables_with_the_prefix_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINFLOW_DB_PASSWORD", "for docker compose")  # no "__": not a setting
    monkeypatch.setenv("TWINFLOW_DATA_DIR", "/data")  # nor a spelling of one
    assert load_settings().postgres.host


@pytest.mark.parametrize(
    ("name", "fixed"),
    [
        ("TWINFLOW_FLOW_BATCH_SIZE", "TWINFLOW_FLOW__BATCH_SIZE"),
        ("TWINFLOW_POSTGRES_PASSWORD", "TWINFLOW_POSTGRES__PASSWORD"),
        ("TWINFLOW_ALERTS_RULES_REORDER_WINDOW_S", "TWINFLOW_ALERTS__RULES__REORDER_WINDOW_S"),
    ],
)
def test_a_setting_spelled_with_single_underscores_is_refused_with_its_spelling(
    monkeypatch: pytest.MonkeyPatch, name: str, fixed: str
) -> None:
    """pydantic-settings ignores such a variable: the setting kept its default without a word."""
    monkeypatch.setenv(name, "7")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert f"{name} (environment): sets nothing" in str(err.value) and f"Use {fixed}, or unset it." in str(err.value)


def test_a_bad_value_in_a_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINFLOW_MQTT__QOS", "7")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "TWINFLOW_MQTT__QOS (environment): [mqtt] qos: Input should be less than or equal to 2" in str(err.value)


# ----------------------------------------------------------------------------- the other files
def test_policy_file_unknown_key(tmp_path: Path) -> None:
    f = tmp_path / "policy.toml"
    f.write_text('[[rule]]\nname = "ops"\nsubjct = { role = "operator" }\n[rule.parameters]\nspeed = {}\n')
    with pytest.raises(ConfigError) as err:
        load_policy(f)
    assert f"invalid policy file {f}:" in str(err.value)
    assert "[[rule]] entry 1 subjct: unknown key, did you mean `subject`?" in str(err.value)


def test_registry_file_unknown_section(tmp_path: Path) -> None:
    f = tmp_path / "twins.toml"
    f.write_text('[twins."pump-1"]\ntype = "pump"\n')
    with pytest.raises(ConfigError) as err:
        load_twin_registry(f)
    assert "[twins]: unknown section, did you mean `twin`?" in str(err.value)


def test_mapping_file_unknown_keys(tmp_path: Path) -> None:
    f = tmp_path / "plant.toml"
    text = (REPO / "config" / "plant.toml").read_text()
    f.write_text(
        text.replace("poll_interval_ms", "poll_intervall_ms").replace("writable = true", "writeable = true", 1)
    )
    with pytest.raises(MappingError) as err:
        load_mapping(f)
    message = str(err.value)
    assert "[modbus] poll_intervall_ms: unknown key, did you mean `poll_interval_ms`?" in message
    assert "writeable: unknown key, did you mean `writable`?" in message
    assert isinstance(err.value, ConfigError)


# ----------------------------------------------------------------------------- the command line
def _twinflow(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TWINFLOW_") or k.startswith("TWINFLOW_STACK__")}
    return subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_the_cli_reports_a_bad_config_in_a_few_lines_with_exit_code_2(tmp_path: Path) -> None:
    cfg = tmp_path / "twinflow.toml"
    cfg.write_text('[postgres]\nhostname = "db"\n[alerts.rules.anomaly]\nmin_duration = 30\n')
    res = _twinflow(["run", "telemetry"], TWINFLOW_CONFIG=str(cfg), TWINFLOW_KAFKA__BOOTSTRAP="k:9092")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 4, res.stderr  # a title and one line per mistake
    assert f"{cfg}: [postgres] hostname: unknown key, did you mean `host`?" in res.stderr
    assert f"{cfg}: [alerts.rules.anomaly] min_duration: unknown key, did you mean `min_duration_s`?" in res.stderr
    assert "TWINFLOW_KAFKA__BOOTSTRAP (environment): [kafka] bootstrap: unknown key" in res.stderr


def test_the_cli_reports_a_syntax_error_without_a_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "twinflow.toml"
    cfg.write_text("[flow]\nbatch_size = 10 000\n")
    res = _twinflow(["bridge", "mqtt"], TWINFLOW_CONFIG=str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert f"{cfg}, line 2, column 17: not valid TOML" in res.stderr


def test_a_bad_file_found_by_a_flow_is_a_user_error_too(tmp_path: Path) -> None:
    """The twin registry is read when the flow is built: same message, exit code 2, no traceback."""
    registry = tmp_path / "twins.toml"
    registry.write_text('[[pattern]]\nmatch = "pump-*"\n[[patern]]\nmatch = "fan-*"\n')
    res = _twinflow(["run", "telemetry", "--no-recovery"], TWINFLOW_SECURITY__TWIN_REGISTRY=str(registry))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert f"invalid twin registry file {registry}:" in res.stderr
    assert "[patern]: unknown section, did you mean `pattern`?" in res.stderr


def test_a_metrics_port_in_use_is_a_user_error_named_before_the_flow_starts() -> None:
    """`twinflow run --metrics-port` on a port something listens on: exit code 2, the port named."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = _twinflow(["run", "pipeline", "--no-recovery", "--metrics-port", str(port)])
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert f"--metrics-port {port}: port {port} is not free" in " ".join(res.stderr.split())
