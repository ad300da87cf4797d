"""`twinflow run` resumes a flow whose input topics changed (docs/operations.md, Upgrading).

The alerts flow used to read ``twin.alerts`` and now reads ``twin.desync``. Bytewax refuses to
resume a Kafka input whose recovery snapshot holds a partition of a topic it no longer reads; the
runner forgets those positions and keeps the rest of the state. Here the alerts flow runs with
recovery, its desync input is renamed (as the upgrade does), and it runs again from its snapshot.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from operators.records.alerts import TwinStatus, encode
from tests.integration.plant_helpers import settings_of
from tests.kafka_helpers import produce
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration


def run_alerts(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "twinflow.cli.main", "run", "alerts", "--no-tail"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def test_the_alerts_flow_resumes_after_its_desync_input_was_renamed(stack_settings: Settings, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **topic_env(stack_settings, f"it.retired.{uid}."),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
    }
    before = settings_of(env)
    produce(before, [(b"r1", encode(TwinStatus("r1", datetime.now(UTC), False)))], topic=before.alerts.status_topic)
    first = run_alerts(env)
    assert first.returncode == 0, first.stderr[-3000:]
    parts = list((tmp_path / "recovery" / "alerts").glob("part-*.sqlite3"))
    assert parts, "the first run kept no recovery state"

    renamed = {**env, "TWINFLOW_TWIN__DESYNC_TOPIC": f"it.retired.{uid}.twin.desync.v2"}
    settings_of(renamed)
    second = run_alerts(renamed)
    assert second.returncode == 0, second.stderr[-3000:]
    old = before.twin.desync_topic
    assert f"{old} is no longer an input of this flow" in second.stderr
    third = run_alerts(renamed)  # nothing left to forget
    assert third.returncode == 0 and "no longer an input" not in third.stderr, third.stderr[-3000:]
