"""The Quick start's demo runs end to end and reports every reading landed."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_and_everything_lands(stack_settings):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinflow.cli",
            "demo",
            "--publisher",
            "--duration",
            "4",
            "--twins",
            "3",
            "--rate",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "every published reading landed exactly once" in res.stdout
    assert res.stdout.count("-pump-0") >= 3
