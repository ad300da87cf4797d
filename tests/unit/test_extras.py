"""A protocol library that is not installed (an extra of the twinflow package) is named with its
install command: by the CLI on stderr, exit code 2, no traceback; by the connector's import in Python.

The library is made unimportable in a child process (``sys.modules[name] = None``, which is what
Python does for a module that is known to be missing), so the installed environment stays untouched.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connectors.extras import EXTRAS, MissingExtra, explain, require

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "config" / "plant.toml"


def _without(modules: list[str], code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    hide = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    script = "import sys\n" + hide + textwrap.dedent(code)
    env = {"PATH": "/usr/bin:/bin", "TWINFLOW_STACK__DIR": str(tmp_path / "stack"), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("protocol", "module"), [("opcua", "asyncua"), ("modbus", "pymodbus")])
def test_the_bridge_command_names_the_install_command(tmp_path: Path, protocol: str, module: str) -> None:
    code = f"""
        sys.argv = ["twinflow", "bridge", {protocol!r}, "--mapping", {str(PLANT)!r}]
        from twinflow.cli.main import main
        main()
    """
    done = _without([module], code, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"pip install 'twinflow[{protocol}]'" in done.stderr
    assert module in done.stderr
    assert "Traceback" not in done.stderr


def test_the_simulator_names_the_missing_extra(tmp_path: Path) -> None:
    code = f"""
        sys.argv = ["twinflow", "simulate", "--mapping", {str(PLANT)!r}, "--duration", "1"]
        from twinflow.cli.main import main
        main()
    """
    done = _without(["asyncua"], code, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "pip install 'twinflow[opcua]'" in done.stderr and "Traceback" not in done.stderr


def test_importing_a_connector_without_its_extra_raises_a_clear_import_error(tmp_path: Path) -> None:
    code = """
        try:
            import connectors.sparkplug.codec
        except ImportError as exc:
            print(type(exc).__name__, exc)
    """
    done = _without(["google.protobuf", "google"], code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "MissingExtra the Sparkplug B codec needs google.protobuf, which is not installed: "
        "pip install 'twinflow[sparkplug]'"
    )


def test_with_everything_installed_nothing_is_missing() -> None:
    for extra in EXTRAS:
        require(extra)  # make setup installs every extra


def test_unrelated_missing_modules_are_not_blamed_on_an_extra() -> None:
    assert explain(ModuleNotFoundError("x", name="numpy_nope")) is None
    found = explain(ModuleNotFoundError("x", name="asyncua.crypto"))
    assert isinstance(found, MissingExtra) and found.extra == "opcua"
    assert explain(ModuleNotFoundError("x", name="google")).extra == "sparkplug"
