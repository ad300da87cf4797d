"""`twinflow run pipeline` as a user starts it, on a pump whose 0/1 running flag comes as a JSON
number (a Modbus coil or an OPC-UA Int32 read as a number) and switches every 8-20 minutes, the
flow following it, and of the same pump with an 8σ pressure fault between two switches (docs/ml.md,
"States: statuses sent as numbers"): scored as a level, the switches were alarms (the healthy pump
had anomalous rows); taken for a state (operating-point context, as a boolean is) none is, and the
fault is still found. The flag is not forecast once it is a state (no forecast rows for it from its
first switch on), the other sensors are."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.plant_helpers import settings_of
from tests.kafka_helpers import produce
from tests.process_helpers import Background
from tests.status_signals import FAULT, SWITCHES, N, plant_with_status
from tests.twin_kafka import envelope, query
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration


def _readings(twin: str, t0: datetime, fault: bool) -> list[tuple[bytes, bytes]]:
    cols = plant_with_status("running", fault)
    out = []
    for i in range(N):
        values = {k: float(v[i]) for k, v in cols.items() if k != "running"} | {"running": int(cols["running"][i])}
        out.append((twin.encode(), envelope(twin, t0 + timedelta(seconds=i), i, values)))
    return out


def test_a_running_flag_sent_as_a_number_is_context_in_the_pipeline(stack_settings: Settings, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    env = {**topic_env(stack_settings, f"it.states.{uid}."), "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery")}
    s = settings_of(env)
    healthy, faulty = f"pump{uid}", f"pump{uid}-fault"
    t0 = datetime.now(UTC) - timedelta(hours=3)
    produce(s, _readings(healthy, t0, fault=False) + _readings(faulty, t0, fault=True))

    job = Background(["run", "pipeline", "--no-tail"], {**os.environ, **env}, tmp_path / "pipeline.log")
    assert job.shell.wait(600) == 0, job.output()[-3000:]
    assert "Traceback" not in job.output()

    sql = "SELECT ts, is_anomaly, kind FROM anomaly_scores WHERE twin_id = %s ORDER BY ts"
    rows = query(s, sql, (healthy,))
    assert len(rows) > 3000  # scored between the switches
    assert not [r["ts"] for r in rows if r["is_anomaly"] or r["kind"]]
    rows = query(s, sql, (faulty,))
    fault = (t0 + timedelta(seconds=FAULT[0]), t0 + timedelta(seconds=FAULT[1] + 60))
    flagged = [r["ts"] for r in rows if r["is_anomaly"] or r["kind"]]
    assert flagged and all(fault[0] <= ts < fault[1] for ts in flagged), (flagged[:3], fault)

    sql = "SELECT sensor, max(ts) AS last FROM forecasts WHERE twin_id = %s GROUP BY sensor"
    forecasts = {r["sensor"]: r for r in query(s, sql, (healthy,))}
    state_from = t0 + timedelta(seconds=SWITCHES[0])  # its first switch: a state from then on
    assert "running" not in forecasts or forecasts["running"]["last"] < state_from, forecasts.get("running")
    late = t0 + timedelta(seconds=N - 600)
    assert {"temp_c", "pressure_bar", "flow_m3h"} <= forecasts.keys(), sorted(forecasts)
    assert all(forecasts[k]["last"] >= late for k in ("temp_c", "pressure_bar", "flow_m3h")), forecasts
