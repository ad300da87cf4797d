"""Malformed mapping files: the real commands refuse to start and name file, asset and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

GOOD_ASSET = """
[[assets]]
twin_id = "pump-ok"
type = "pump"
protocol = "opcua"
[assets.params]
speed_rpm = { node = "ns=2;s=pump-ok.speed_rpm" }
"""

CASES = {
    # file body, command, expected fragments (besides the file name)
    "bad_register": (
        GOOD_ASSET
        + """
[[assets]]
twin_id = "pump-mb"
type = "pump"
protocol = "modbus"
[assets.params]
speed_rpm = { register = "flag", address = 0 }
""",
        ["bridge", "modbus"],
        ["asset 'pump-mb' (assets[1])", "params.speed_rpm.register", "'holding', 'input', 'coil' or 'discrete'"],
    ),
    "bad_node": (
        GOOD_ASSET.replace("ns=2;s=pump-ok.speed_rpm", "not a node id"),
        ["bridge", "opcua"],
        ["asset 'pump-ok' (assets[0])", "params.speed_rpm.node", "ns=2;s="],
    ),
    "writable_input": (
        """
[[assets]]
twin_id = "comp-9"
type = "compressor"
protocol = "modbus"
[assets.params]
speed_sp_rpm = { register = "input", address = 0, writable = true }
""",
        ["simulate", "--duration", "1"],
        ["asset 'comp-9' (assets[0])", "params.speed_sp_rpm.writable", "read-only"],
    ),
    "mqtt_missing_command_topic": (
        """
[[assets]]
twin_id = "pump-mq"
type = "pump"
protocol = "mqtt"
topic = "plant/pump/state"
[assets.params]
speed_sp_rpm = { path = "sp", writable = true }
""",
        ["bridge", "mqtt"],
        ["asset 'pump-mq' (assets[0])", "command_topic"],
    ),
    "typo_field": (
        GOOD_ASSET.replace('type = "pump"', 'type = "pump"\nprotocl = "x"'),
        ["bridge", "opcua"],
        ["asset 'pump-ok' (assets[0])", "protocl", "did you mean `protocol`?"],
    ),
    "toml_syntax": ("[[assets]\ntwin_id = 1", ["bridge", "opcua"], ["line 1, column 9", "not valid TOML"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_mapping_refuses_to_start(tmp_path: Path, case: str) -> None:
    body, command, fragments = CASES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(body)
    argv = (
        [*command[:2], "--mapping", str(path), *command[2:]]
        if command[0] == "bridge"
        else [command[0], "--mapping", str(path), *command[1:]]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert str(path) in out, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} missing from:\n{out}"
