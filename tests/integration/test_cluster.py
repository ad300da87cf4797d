"""A 2-process Bytewax cluster over a partitioned topic writes exactly what 1 process writes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


def _rows(settings, prefix: str) -> list[tuple]:
    with psycopg.connect(settings.postgres.conninfo()) as db:
        return db.execute(
            "SELECT twin_id, sensor, ts, value, seq, quality, source FROM telemetry "
            "WHERE twin_id LIKE %s ORDER BY 1, 2, 3",
            (prefix + "%",),
        ).fetchall()


def _run(settings, processes: int) -> None:
    env = {
        **os.environ,
        "TWINFLOW_TOPICS__RAW": settings.topics.raw,
        "TWINFLOW_TOPICS__DLQ": settings.topics.dlq,
    }
    res = subprocess.run(
        [sys.executable, "-m", "twinflow.cli.main", "run", "-p", str(processes), "--no-recovery", "--no-tail"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_two_processes_write_the_same_rows_as_one(settings, unique):
    prefix = f"cl{unique}-"
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    msgs = []
    for i in range(4000):
        twin = f"{prefix}{i % 37}"
        body = {
            "v": 1,
            "twin_id": twin,
            "ts": (t0 + timedelta(milliseconds=10 * i)).isoformat(),
            "seq": i,
            "source": "test",
            "readings": {"a": i * 0.5, "b": -i, "c": 1.0},
        }
        msgs.append((twin.encode(), orjson.dumps(body)))
    produce(settings, msgs)

    _run(settings, 1)
    single = _rows(settings, prefix)
    assert len(single) == 12000
    with psycopg.connect(settings.postgres.conninfo(), autocommit=True) as db:
        db.execute("DELETE FROM telemetry WHERE twin_id LIKE %s", (prefix + "%",))
    _run(settings, 2)
    assert _rows(settings, prefix) == single
