"""A flow whose input topics the broker does not have says so and how to create them (exit 1), instead
of a Rust panic and a traceback from inside Bytewax."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("flow", ["telemetry", "pipeline"])
def test_a_flow_names_its_missing_input_topics_and_the_fix(stack_settings, flow: str) -> None:
    missing = f"it.missing.{uuid.uuid4().hex[:8]}.raw"
    run = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "run", flow, "--no-recovery", "--no-tail"],
        env={**os.environ, "TWINFLOW_TOPICS__RAW": missing},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert missing in out and "twinflow kafka init" in out, out
    assert "Traceback" not in out and "panicked" not in out, out
