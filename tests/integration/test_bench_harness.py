"""The end-to-end benchmark harness keeps working (a small run; no timing assertions)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_e2e_harness_small_run(stack_settings):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.e2e",
            "--readings",
            "3000",
            "--twins",
            "5",
            "--naive-sample",
            "100",
            "--latency-seconds",
            "2",
            "--no-record",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "raw limit" in out and "naive" in out and "pipeline" in out
    assert "telemetry rows 15,000 (expected 15,000)" in out
    assert "for 5 twins" in out  # every twin left warm-up and was scored
    # One latency row per load level, each with every paced reading written (no timing assertions).
    lines = out.splitlines()
    for level in ("25%", "50%", "90%"):
        row = next((ln for ln in lines if ln.strip("│ ").startswith(level)), None)
        assert row is not None, out[-3000:]
        assert row.rstrip("│ ").endswith("yes"), row
