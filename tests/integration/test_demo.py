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
            "twinflow.cli.main",
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


def test_plant_demo_runs_every_layer_and_writes_the_report(stack_settings, tmp_path):
    """The Quick start's `make demo`, shortened: simulator → 3 bridges → pipeline and alerts flows → report."""
    res = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "demo", "--duration", "40", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    for twin in ("pump-001", "pump-002", "pump-003", "compressor-001", "compressor-002", "compressor-003"):
        assert twin in res.stdout  # every protocol's assets showed up in the live view
    assert "faults detected" in res.stdout
    assert "web view (live while the demo runs): http://127.0.0.1:" in res.stdout and "#token=tf_" in res.stdout
    html = (tmp_path / "report.html").read_text()
    assert html.count('data-chart="sensor"') >= 6 and html.count('data-chart="timeline"') == 6
