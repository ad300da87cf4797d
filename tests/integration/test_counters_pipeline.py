"""`twinflow run pipeline` as a user starts it, on a twin with an energy meter named a counter in
``TWINFLOW_ML__COUNTERS__SENSORS`` (docs/ml.md, "Counters: detection and names"): the meter counts
and dips by 0.05 kWh now and then (a correction; automatic detection calls it no counter and its
level drifts from the reference: anomalous rows, health 0.54); named, its rate is scored and no
anomaly_scores row is anomalous."""

from __future__ import annotations

import math
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.integration.plant_helpers import settings_of
from tests.kafka_helpers import produce
from tests.process_helpers import Background
from tests.twin_kafka import envelope, query
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

N = 2000


def _readings(twin: str) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(3)
    energy = 100.0 + np.cumsum(np.abs(rng.normal(0.02, 0.005, N)))
    for i in (300, 700, 1100, 1500):
        energy[i:] -= 0.05
    t0 = datetime.now(UTC) - timedelta(hours=2)
    out = []
    for i in range(N):
        values = {
            "temp": 60 + math.sin(i / 50) + rng.normal(0, 0.2),
            "pressure": 5 + 0.1 * math.sin(i / 50) + rng.normal(0, 0.02),
            "energy_kwh": float(energy[i]),
        }
        out.append((twin.encode(), envelope(twin, t0 + timedelta(seconds=i), i, values)))
    return out


def test_a_named_counter_is_scored_as_its_rate_in_the_pipeline(stack_settings: Settings, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    env = {
        **topic_env(stack_settings, f"it.counters.{uid}."),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
        "TWINFLOW_ML__COUNTERS__SENSORS": '["*_kwh"]',
    }
    s = settings_of(env)
    twin = f"meter{uid}"
    produce(s, _readings(twin))

    job = Background(["run", "pipeline", "--no-tail"], {**os.environ, **env}, tmp_path / "pipeline.log")
    assert job.shell.wait(300) == 0, job.output()[-3000:]
    assert "Traceback" not in job.output()

    rows = query(s, "SELECT is_anomaly, kind, health FROM anomaly_scores WHERE twin_id = %s", (twin,))
    assert len(rows) > 1000  # scored from the end of the warm-up (no restart for the named counter)
    assert not any(r["is_anomaly"] for r in rows)
    assert not any(r["kind"] for r in rows)
    assert min(r["health"] for r in rows if r["health"] is not None) > 0.9
