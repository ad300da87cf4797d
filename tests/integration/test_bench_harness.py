"""The benchmarks' harnesses keep working (small runs; no timing assertions).

Minutes of whole benchmark runs: `make bench-harness` runs them, `make test` leaves them out."""

import os
import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.bench_harness]


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
        timeout=600,
        # phases with recovery on last two snapshot intervals at least: 2 s here
        env={**os.environ, "TWINFLOW_FLOW__SNAPSHOT_INTERVAL_S": "1"},
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "raw limit" in out and "naive" in out and "pipeline" in out
    # five runs: pipeline then alerts, separate flows, -p 2, pipeline with the alerts flow beside it,
    # and that again on steady values
    assert out.count("telemetry rows 15,000 (expected 15,000)") == 5, out[-3000:]
    assert out.count("for 5 twins") == 5  # every twin left warm-up and was scored, in every run
    assert "the alerts flow alongside" in out
    # the ramp moves a value beyond its deadband at nearly every reading, steady values seldom
    per_reading = r"^(pipeline flow \+ alerts side by side.*?): wall.*twin versions [\d,]+ \(([\d.]+) per"
    versions = dict(re.findall(per_reading, out, re.M))
    ramp = float(versions["pipeline flow + alerts side by side (2 processes)"])
    steady = float(versions["pipeline flow + alerts side by side, steady values (2 processes)"])
    assert steady < ramp / 2, versions
    # One latency row per load level, and 50 % again three times with the flows' recovery on (as
    # deployed), each with every paced reading written (no timing assertions), and the p99s' median.
    lines = out.splitlines()
    for level in ("25%", "50%", "90%", "50% recovery on, run 1", "50% recovery on, run 2", "50% recovery on, run 3"):
        row = next((ln for ln in lines if ln.strip("│ ").startswith(level)), None)
        assert row is not None, out[-3000:]
        assert row.rstrip("│ ").endswith("yes"), row
    summary = r"p99 at 50 % with recovery on, 3 runs: telemetry [\d,]+, [\d,]+, [\d,]+ ms \(median"
    assert re.search(summary, out), out[-3000:]
    # the host's speed before and after (the models step alone), to compare runs on a shared machine
    probe = re.search(r"Speed probe .*: ([\d.]+) before the runs, ([\d.]+) after", out)
    assert probe and all(float(ms) > 0 for ms in probe.groups()), out[-3000:]


FLOWS = ("--flow", "twin", "--flow", "models", "--flow", "alerts")


def test_flow_cpu_harness_finds_the_same_output_in_two_runs(stack_settings):
    """benchmarks.flow_cpu (before/after CPU per reading with an output digest) keeps working, and two
    runs of the twin, models and alerts flows on the same input write the same records and rows."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.flow_cpu",
            "--readings",
            "3000",
            "--twins",
            "6",
            "--repeat",
            "2",
            "--check",
            *FLOWS,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "twin: same output in every run" in out and "models: same output in every run" in out
    # The digests cover real output: a twin.state record per reading plus database rows, and scores.
    twin_runs = re.findall(r"twin +this +run \d.*kafka \w+ \(([\d,]+)\) db \w+ \(([\d,]+)\)", out)
    model_runs = re.findall(r"models +this +run \d.*kafka \w+ \(([\d,]+)\)", out)
    assert len(twin_runs) == 2 and len(model_runs) == 2, out[-3000:]
    assert all(kafka == "3,000" and int(rows.replace(",", "")) > 3000 for kafka, rows in twin_runs)
    assert all(int(n.replace(",", "")) > 0 for n in model_runs)
    # PostgreSQL's CPU is split by writer (the sinks name their connections): the twin flow's is its TwinSink.
    assert len(re.findall(r"twin +this +run \d.*\(PostgreSQL +[\d.]+: TwinSink [\d.]+", out)) == 2, out[-3000:]
    # The alerts flow reads what the pipeline flow wrote for it: the pipeline wrote the scores' and
    # forecasts' rows itself (its messages say so), so the alerts flow writes none of them again.
    assert "alerts: same output in every run" in out
    alert_rows = re.findall(r"alerts +this +run \d.* model rows \w+ \(([\d,]+)\)", out)
    assert alert_rows == ["0", "0"], out[-3000:]


FLEET_ARGS = ("--rate", "60", "--twins", "3", "12", "--seconds", "2", "--no-record")


@pytest.mark.parametrize("setup", [(), ("--telemetry-apart",)], ids=["pipeline", "telemetry apart"])
def test_fleet_harness_measures_each_count_of_twins(stack_settings, setup):
    """benchmarks.fleet (latency by twins per process, recovery on) keeps working: one row per count,
    every paced reading written, and the snapshots it reports are those the run's flows stored; with
    ``--telemetry-apart`` the telemetry flow writes the rows the pipeline no longer writes."""
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet", *FLEET_ARGS, *setup],
        capture_output=True,
        text=True,
        timeout=600,
        # a phase with recovery on lasts two snapshot intervals at least: 2 s here
        env={**os.environ, "TWINFLOW_FLOW__SNAPSHOT_INTERVAL_S": "1", "COLUMNS": "250"},
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = {
        cells[0]: cells
        for line in res.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 11 and cells[0].isdigit()
    }
    assert set(rows) == {"3", "12"}, res.stdout[-3000:]
    assert ("pipeline without ingest + telemetry + alerts" in res.stdout) == bool(setup), res.stdout[-3000:]
    for twins, cells in rows.items():
        assert float(cells[1]) == pytest.approx(60 / int(twins), rel=0.2), cells  # readings/s per twin
        assert cells[-1] == "yes", cells  # every paced reading reached the database
        assert float(cells[-2].replace(",", "")) > 1, cells  # a model state per twin is KiBs, not nothing


def _reconcile_leftovers(settings) -> set[str]:
    """Topics and databases named like benchmarks.reconcile's: ``bench.<8 hex>.…``, ``twinflow_bench_<8 hex>``."""
    import psycopg
    from confluent_kafka.admin import AdminClient

    from connectors.kafka.clients import client_config

    topics = AdminClient(client_config(settings)).list_topics(timeout=30).topics
    su = settings.postgres.conninfo(
        user="postgres", password=settings.stack.postgres_superuser_password.get_secret_value(), dbname="postgres"
    )
    with psycopg.connect(su) as db:
        dbs = [r[0] for r in db.execute("SELECT datname FROM pg_database")]
    return {t for t in topics if re.match(r"bench\.[0-9a-f]{8}\.", t)} | {
        d for d in dbs if re.fullmatch(r"twinflow_bench_[0-9a-f]{8}", d)
    }


def test_reconcile_harness_runs_the_flow_on_topics_of_its_own(stack_settings):
    """benchmarks.reconcile --flow-rounds (the twin flow end to end) keeps working: its settings pass
    validation, every desired update it sends is accepted (the twins are known before their first
    reading is read) and it leaves no topic or database behind."""
    before = _reconcile_leftovers(stack_settings)
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.reconcile", "--twins", "30", "--rounds", "2", "--flow-rounds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    flow = re.search(
        r"([\d,]+) input records already in Kafka.*\(([\d,]+) history rows.*; ([\d,]+) desired", res.stdout
    )
    assert flow, res.stdout[-3000:]
    records, history, denied = (int(g.replace(",", "")) for g in flow.groups())
    assert records == 65 and 0 < history <= records and denied == 0, flow.group(0)
    assert _reconcile_leftovers(stack_settings) <= before
