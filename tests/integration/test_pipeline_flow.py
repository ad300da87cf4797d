"""`twinflow run pipeline` as a user starts it: one flow for ingest, reconciliation and models.

Readings go to telemetry.raw; telemetry rows, twin versions and anomaly scores come out, an
unsigned desired request is refused by the gate; a restart from the recovery snapshot and a
replay from the beginning (no recovery) write no row twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from connectors.kafka.messages import STORED
from operators.records.alerts import AnomalyScore, decode
from tests.integration.plant_helpers import settings_of
from tests.kafka_helpers import produce, read_topic
from tests.process_helpers import Background
from tests.twin_kafka import envelope, query, wait_for
from twinflow.demo.plant import topic_env
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

TWINS = 3


@dataclass
class Pipe:
    uid: str
    tmp: Path
    vars: dict[str, str]
    settings: Settings

    def run(self, name: str, *args: str) -> Background:
        return Background(["run", "pipeline", *args], self.vars, self.tmp / f"{name}.log")


@pytest.fixture
def pipe(stack_settings: Settings, tmp_path: Path) -> Iterator[Pipe]:
    uid = uuid.uuid4().hex[:8]
    extra = {
        **topic_env(stack_settings, f"it.pipe.{uid}."),
        "TWINFLOW_FLOW__RECOVERY_DIR": str(tmp_path / "recovery"),
        "TWINFLOW_ML__ANOMALY__WARMUP": "20",
    }
    settings = settings_of(extra)
    yield Pipe(uid, tmp_path, {**os.environ, **extra}, settings)


def _readings(prefix: str, start: int, n: int, speed: float = 1000.0) -> list[tuple[bytes, bytes]]:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    out = []
    for i in range(start, start + n):
        twin = f"{prefix}{i % TWINS}"
        ts = t0 + timedelta(milliseconds=100 * i)
        out.append((twin.encode(), envelope(twin, ts, i, {"speed": speed + i % 7, "temp": 40.0 + (i % 5) / 10})))
    return out


def _rows(s: Settings, prefix: str) -> tuple[int, int]:
    row = query(
        s,
        "SELECT count(*) AS n, count(DISTINCT (twin_id, seq, sensor)) AS d FROM telemetry WHERE twin_id LIKE %s",
        (prefix + "%",),
    )[0]
    return row["n"], row["d"]


def _versions(s: Settings, prefix: str) -> dict[str, int]:
    rows = query(
        s,
        "SELECT twin_id, max(version) AS v FROM twin_state_history WHERE twin_id LIKE %s GROUP BY twin_id",
        (prefix + "%",),
    )
    return {r["twin_id"]: r["v"] for r in rows}


def _scored(s: Settings) -> set[str]:
    return {orjson.loads(r.value)["twin_id"] for r in read_topic(s, s.alerts.anomalies_topic) if r.value}


def _score_rows(s: Settings, prefix: str) -> set[tuple[str, datetime, float]]:
    rows = query(s, "SELECT twin_id, ts, score FROM anomaly_scores WHERE twin_id LIKE %s", (prefix + "%",))
    return {(r["twin_id"], r["ts"], r["score"]) for r in rows}


def _scores_on_kafka(s: Settings) -> set[tuple[str, datetime, float]]:
    """The scores on the topic, as rows; each message carries the header saying its row is written."""
    messages = [m for m in read_topic(s, s.alerts.anomalies_topic) if m.value]
    assert all(STORED in m.headers for m in messages)
    scores = [decode(AnomalyScore, m.value) for m in messages]
    return {(r.twin_id, r.ts, r.score) for r in scores}


def test_run_pipeline_writes_rows_state_and_scores_once(pipe: Pipe) -> None:
    s, prefix = pipe.settings, f"pipe{pipe.uid}-"
    twins = {f"{prefix}{k}" for k in range(TWINS)}
    produce(s, _readings(prefix, 0, 300))
    unsigned = {"twin_id": f"{prefix}0", "values": {"speed": 1200.0}, "author": "ann"}
    produce(s, [(f"{prefix}0".encode(), orjson.dumps(unsigned))], topic=s.twin.desired_topic)

    flow = pipe.run("pipeline")
    wait_for("every reading as rows", lambda: _rows(s, prefix) == (600, 600), timeout=120)
    wait_for("a twin version per twin", lambda: set(_versions(s, prefix)) == twins, timeout=60)
    wait_for("anomaly scores of every twin", lambda: _scored(s) >= twins, timeout=60)
    # The pipeline writes the scores' rows itself (no alerts flow runs here): every score on Kafka, once.
    wait_for("the scores' rows", lambda: _score_rows(s, prefix) == _scores_on_kafka(s), timeout=60)
    refused = "SELECT count(*) AS n FROM desired_rejections WHERE twin_id = %s"
    wait_for("the unsigned request refused", lambda: query(s, refused, (f"{prefix}0",))[0]["n"] == 1, timeout=60)
    flow.assert_stops_cleanly()
    versions = _versions(s, prefix)

    # A restart resumes from its snapshot and reads only what came since (a new speed: new versions).
    produce(s, _readings(prefix, 300, 60, speed=1500.0))
    rest = pipe.run("pipeline-rest", "--no-tail")
    assert rest.shell.wait(120) == 0, rest.output()[-3000:]
    assert _rows(s, prefix) == (720, 720)
    after = _versions(s, prefix)
    assert all(after[t] > versions[t] for t in twins), (versions, after)

    # A replay of the whole topic without recovery writes no telemetry row twice.
    replay = pipe.run("pipeline-replay", "--no-tail", "--no-recovery")
    assert replay.shell.wait(120) == 0, replay.output()[-3000:]
    assert _rows(s, prefix) == (720, 720)
    assert _score_rows(s, prefix) == _scores_on_kafka(s)
    assert "Traceback" not in replay.output()


def test_a_pipeline_without_ingest_leaves_the_rows_to_the_telemetry_flow(pipe: Pipe) -> None:
    """`flow.pipeline_ingest = false` (large fleets: the rows' latency apart from the pipeline's epoch
    ends), switched on a running deployment and back: resumed from its snapshot, the pipeline writes
    twin versions and scores but no telemetry row, says so, and the telemetry flow beside it writes
    every reading once; switched back, the pipeline writes the rows again."""
    s, prefix = pipe.settings, f"noing{pipe.uid}-"
    twins = {f"{prefix}{k}" for k in range(TWINS)}

    def run(flow: str, name: str, ingest: bool) -> str:
        env = {**pipe.vars, "TWINFLOW_FLOW__PIPELINE_INGEST": str(ingest).lower()}
        job = Background(["run", flow, "--no-tail"], env, pipe.tmp / f"{name}.log")
        assert job.shell.wait(180) == 0, job.output()[-3000:]
        assert "Traceback" not in job.output()
        return job.output()

    produce(s, _readings(prefix, 0, 300))
    run("pipeline", "with-ingest", ingest=True)
    assert _rows(s, prefix) == (600, 600)
    versions = _versions(s, prefix)

    produce(s, _readings(prefix, 300, 60, speed=1500.0))
    out = run("pipeline", "without-ingest", ingest=False)
    assert "writes no telemetry rows; run the telemetry flow beside it" in out
    assert _rows(s, prefix) == (600, 600)
    after = _versions(s, prefix)
    assert all(after[t] > versions[t] for t in twins), (versions, after)
    assert {t for t, _, _ in _score_rows(s, prefix)} == twins

    run("telemetry", "telemetry", ingest=False)  # its first run: the topic from its start
    assert _rows(s, prefix) == (720, 720)

    produce(s, _readings(prefix, 360, 60))
    run("pipeline", "with-ingest-again", ingest=True)
    assert _rows(s, prefix) == (840, 840)


def _written(s: Settings, prefix: str) -> list[tuple]:
    """The telemetry rows and twin versions of the twins ``prefix*``, named without the prefix."""
    telemetry = query(
        s,
        "SELECT twin_id, sensor, ts, value, seq, quality, source FROM telemetry WHERE twin_id LIKE %s ORDER BY 1, 2, 3",
        (prefix + "%",),
    )
    versions = query(
        s,
        "SELECT twin_id, version, event_time, status, reported, desired, delta, change FROM twin_state_history"
        " WHERE twin_id LIKE %s ORDER BY 1, 2",
        (prefix + "%",),
    )
    return [(r["twin_id"].removeprefix(prefix), *list(r.values())[1:]) for r in [*telemetry, *versions]]


def test_a_two_process_pipeline_writes_what_one_process_writes(pipe: Pipe) -> None:
    """`-p 2`: each process reads its share of the partitions, keeps its twins' state and writes the
    rows it made itself (no warning that rows cross processes); the rows are those of one process."""
    s = pipe.settings
    one, two = f"pone{pipe.uid}-", f"ptwo{pipe.uid}-"
    t0 = datetime.now(UTC) - timedelta(minutes=5)

    def readings(prefix: str) -> list[tuple[bytes, bytes]]:
        out = []
        for i in range(1200):
            twin = f"{prefix}{i % 12}"
            ts = t0 + timedelta(milliseconds=100 * i)
            out.append((twin.encode(), envelope(twin, ts, i, {"speed": 1000.0 + i % 7, "temp": 40.0 + i % 5})))
        return out

    produce(s, readings(one))
    single = pipe.run("pipeline-1", "--no-tail", "--no-recovery")
    assert single.shell.wait(180) == 0, single.output()[-3000:]
    expected = _written(s, one)  # before the cluster reads these readings again
    produce(s, readings(two))
    cluster = pipe.run("pipeline-2", "--no-tail", "--no-recovery", "-p", "2")
    assert cluster.shell.wait(180) == 0, cluster.output()[-3000:]

    assert len([r for r in expected if r[1] in ("speed", "temp")]) == 2400
    assert _written(s, two) == expected
    assert "cross processes" not in cluster.output()
