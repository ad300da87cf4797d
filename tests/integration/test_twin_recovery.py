"""Recovery: kill -9 the twin flow mid-run (Bytewax recovery on), restart, and nothing is lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from tests.twin_fixtures import delete_topics, settings_env, twin_db, twin_settings_for  # noqa: F401
from tests.twin_kafka import envelope, produce, query, wait_for
from twinflow.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TWINS = 4
PER_TWIN = 4000


@pytest.fixture
def s(twin_db: Settings) -> Iterator[Settings]:  # noqa: F811
    # every reading changes speed by 1: no relative deadband, so each one is a version
    settings = twin_settings_for(twin_db, {"defaults": {"deadband_pct": 0.0}}, windows_s=[1.0], allowed_lateness_s=1.0)
    yield settings
    delete_topics(settings)


def start_flow(s: Settings, rdir: Path, tail: bool) -> subprocess.Popen:
    env = {**os.environ, **settings_env(s)}
    args = [sys.executable, "-m", "bytewax.run", f"twinflow.dataflows:twin(tail={tail})", "-w", "1"]
    args += ["-r", str(rdir), "-s", "1", "-b", "0"]
    log = open(rdir.parent / f"flow-{tail}.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def count(s: Settings, table: str, twins: list[str]) -> int:
    return query(s, f"SELECT count(*) AS n FROM {table} WHERE twin_id = ANY(%s)", (twins,))[0]["n"]


def test_kill_9_mid_run_then_restart_continues_versions_without_gaps_or_duplicates(s: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    twins = [f"rec-{tag}-{i}" for i in range(TWINS)]
    t0 = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    msgs = [
        (
            twin.encode(),
            envelope(twin, t0 + timedelta(milliseconds=100 * i), i, {"speed": float(i), "temp": 20.0}),
        )
        for i in range(PER_TWIN)
        for twin in twins
    ]
    first_part = len(msgs) // 4
    produce(s, s.topics.raw, msgs[:first_part])
    rdir = tmp_path / "recovery"
    rdir.mkdir()
    init_db_dir(rdir, 1)

    flow = start_flow(s, rdir, tail=True)
    try:

        def written(n: int):
            def check() -> bool:
                assert flow.poll() is None, "the flow exited early"
                return count(s, "twin_state_history", twins) >= n

            return check

        wait_for("the first part to be written", written(first_part))
        time.sleep(2.5)  # a few snapshot intervals pass: state after the first part is snapshotted
        produce(s, s.topics.raw, msgs[first_part:])
        wait_for("the flow to be busy with the second part", written(first_part + 2000), every=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + (tmp_path / "flow-True.log").read_text()[-3000:]) from None
    finally:
        flow.send_signal(signal.SIGKILL)
        flow.wait(30)
    at_kill = count(s, "twin_state_history", twins)
    assert flow.returncode == -signal.SIGKILL
    assert at_kill < TWINS * PER_TWIN, "the flow finished before it was killed; the test proves nothing"

    restart_at = query(s, "SELECT clock_timestamp() AS t")[0]["t"]
    restarted = start_flow(s, rdir, tail=False)
    restarted.wait(240)
    assert restarted.returncode == 0, (tmp_path / "flow-False.log").read_text()[-3000:]

    for twin in twins:
        rows = query(
            s,
            "SELECT version, reported->'speed'->>'value' AS speed FROM twin_state_history "
            "WHERE twin_id = %s ORDER BY version",
            (twin,),
        )
        assert [r["version"] for r in rows] == list(range(1, PER_TWIN + 1)), twin
        # version n is the state after the n-th reading: the restart continued where the snapshot was
        assert [float(r["speed"]) for r in rows] == [float(i) for i in range(PER_TWIN)]
    assert count(s, "twin_sync_quality", twins) == TWINS * PER_TWIN
    # It resumed from a snapshot (early versions were not written again), not from the beginning.
    rewritten = query(
        s,
        "SELECT min(version) AS v FROM twin_state_history WHERE twin_id = ANY(%s) AND recorded_at >= %s",
        (twins, restart_at),
    )[0]["v"]
    assert rewritten is not None and rewritten > 1
    windows = query(
        s,
        "SELECT twin_id, sum(count) AS n, count(*) AS w FROM telemetry_windows "
        "WHERE twin_id = ANY(%s) AND sensor = 'speed' GROUP BY twin_id",
        (twins,),
    )
    assert {w["twin_id"]: w["n"] for w in windows} == dict.fromkeys(twins, PER_TWIN)
    assert all(w["w"] == PER_TWIN // 10 for w in windows)  # 10 readings per 1 s window, one row each


def test_a_stored_version_the_flow_cannot_read_resumes_that_twin_afresh_not_the_flow(
    s: Settings, tmp_path: Path
) -> None:
    """A twin without a snapshot resumes from its newest stored version; a row whose document the flow
    cannot read (a reported value without its `ts`, as another writer stored it) made the flow panic
    (KeyError: 'ts'), stopping every twin. That twin now continues its version numbers afresh, with a
    warning naming it; the others are untouched."""
    tag = uuid.uuid4().hex[:6]
    odd, fine = f"odd-{tag}", f"fine-{tag}"
    t0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    import psycopg

    with psycopg.connect(s.postgres.conninfo(), autocommit=True) as db:
        db.execute(
            "INSERT INTO twin_state_history (twin_id, version, event_time, status, mode, learn, reported, desired,"
            " delta, conflicts, commands, consistency_score, change) VALUES (%s, 5, %s, 'synchronized', 'normal',"
            " true, '{\"x\": {\"value\": 2}}', '{}', '{}', '{}', '{}', 1.0, '{}')",
            (odd, t0),
        )
    msgs = [
        (twin.encode(), envelope(twin, t0 + timedelta(seconds=1 + i), i, {"speed": 100.0 * (i + 1)}))
        for i in range(3)
        for twin in (odd, fine)
    ]
    produce(s, s.topics.raw, msgs)
    rdir = tmp_path / "recovery"
    rdir.mkdir()
    init_db_dir(rdir, 1)
    flow = start_flow(s, rdir, tail=False)
    flow.wait(120)
    log = (tmp_path / "flow-False.log").read_text()
    assert flow.returncode == 0 and "Traceback" not in log, log[-3000:]
    assert f"twin {odd}: its newest stored version 5 cannot be read (KeyError: 'ts')" in log, log[-3000:]
    versions = {
        twin: [
            r["version"]
            for r in query(s, "SELECT version FROM twin_state_history WHERE twin_id = %s ORDER BY 1", (twin,))
        ]
        for twin in (odd, fine)
    }
    assert versions == {odd: [5, 6, 7, 8], fine: [1, 2, 3]}
