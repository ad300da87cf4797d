"""Each named query in sql/queries on native PostgreSQL with a seeded, known fleet."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from connectors.postgres.migrate import migrate
from tests.seed import OWN_MODEL, Fleet, delete, seed
from twinflow import queries

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(stack_settings):
    conninfo = stack_settings.postgres.conninfo()
    migrate(conninfo, stack_settings.postgres.timescaledb)
    fl = seed(conninfo, uuid.uuid4().hex[:8])
    yield fl
    delete(conninfo, fl)


@pytest.fixture
def db(stack_settings):
    with psycopg.connect(stack_settings.postgres.conninfo()) as conn:
        yield conn


def test_every_query_file_is_covered():
    assert set(queries.names()) == {
        "fleet_health",
        "most_anomalous_twins",
        "predicted_failures",
        "sync_quality",
        "alert_mtta_mttr",
        "alarm_rate",
        "twin_state_at",  # covered by tests/integration/test_twin_flow.py
    }


def test_fleet_health_now(db, fleet: Fleet):
    rows = queries.run(db, "fleet_health", twins=fleet.twins, stale_after="5 minutes")
    by = {r["twin_id"]: r for r in rows}
    assert rows[0]["twin_id"] == fleet.f  # worst first
    assert by[fleet.f]["status"] == "critical" and by[fleet.f]["worst_open_severity"] == "critical"
    assert by[fleet.f]["open_alerts"] == 1  # the failure alert; the anomaly alert is resolved
    assert by[fleet.f]["rul_hours"] == pytest.approx(3.0)
    assert by[fleet.h]["status"] == "ok" and by[fleet.d]["status"] == "ok"
    now = db.execute("SELECT now()").fetchone()[0]
    recent = sum(1 for i in range(1, 121) if fleet.at(-i) > now - timedelta(minutes=5))
    assert recent >= 1 and by[fleet.h]["recent_readings"] == 3 * recent  # 3 sensors a sample
    assert by[fleet.h]["anomaly_score"] == pytest.approx(0.1)
    assert by[fleet.h]["health"] == pytest.approx(0.99) and by[fleet.f]["health"] == pytest.approx(0.97)


def test_most_anomalous_twins(db, fleet: Fleet):
    rows = queries.run(db, "most_anomalous_twins", since=fleet.at(-120), until=fleet.end, twins=fleet.twins, limit=10)
    assert [r["twin_id"] for r in rows] == [fleet.f, fleet.h]  # d has no scores
    f, h = rows
    assert (f["anomalous_samples"], f["samples"]) == (30, 120)
    assert f["peak_ratio"] == pytest.approx(0.92 / 0.5)
    assert f["top_sensors"] == "vibration, temp_c, rpm"
    assert h["anomalous_samples"] == 5 and h["top_sensors"] == "rpm, temp_c"
    limited = queries.run(db, "most_anomalous_twins", since=fleet.at(-120), until=fleet.end, twins=fleet.twins, limit=1)
    assert [r["twin_id"] for r in limited] == [fleet.f]


def test_predicted_failures_next_24h(db, fleet: Fleet):
    def run(within_h: float = 24, min_probability: float | None = 0.5, source: str = "twinflow", limit=None):
        return queries.run(
            db, "predicted_failures", twins=fleet.twins, within_h=within_h, min_probability=min_probability,
            source=source, limit=limit,
        )  # fmt: skip

    rows = run()
    assert [r["twin_id"] for r in rows] == [fleet.f]
    [r] = rows
    assert r["rul_hours"] == pytest.approx(3.0) and r["failure_probability"] == pytest.approx(0.7)
    assert r["predicted_failure_at"] == fleet.at(-10) + timedelta(hours=3) and r["model"] == ""  # a built-in one
    # the horizon: h fails in 500 h (p 0.01); within 2 h nobody, unless the probability counts
    assert [r["twin_id"] for r in run(within_h=600)] == [fleet.f, fleet.h]
    assert run(within_h=2, min_probability=None) == [] and len(run(within_h=2)) == 1
    assert [r["twin_id"] for r in run(within_h=600, limit=1)] == [fleet.f]  # soonest first
    # a model of your own's predictions: f fails within the hour
    [own] = run(within_h=1, source=OWN_MODEL)
    assert (own["twin_id"], own["model"], own["rul_hours"]) == (fleet.f, OWN_MODEL, pytest.approx(0.5))


RECON_COLUMNS = (
    "recon_versions",
    "consistency_score",
    "mean_consistency",
    "min_consistency",
    "synchronized_share",
    "mean_sync_latency_ms",
    "p95_sync_latency_ms",
    "max_sync_latency_ms",
    "max_conflicts",
)


def test_sync_quality(db, fleet: Fleet):
    rows = queries.run(db, "sync_quality", since=fleet.at(-120), until=fleet.end, twins=fleet.twins)
    by = {r["twin_id"]: r for r in rows}
    assert set(by) == set(fleet.twins)
    d, h = by[fleet.d], by[fleet.h]
    assert d["samples"] == 120 and float(d["good_share"]) == pytest.approx(0.9)
    assert (d["desync_alerts"], d["open_desync"]) == (1, 0)
    assert float(d["in_sync_share"]) == pytest.approx(1 - 10 / 120, abs=1e-3)
    assert float(h["good_share"]) == 1.0 and float(h["in_sync_share"]) == 1.0
    assert h["median_gap_s"] == 60 and h["max_gap_s"] == 60
    assert rows[0]["twin_id"] == fleet.d  # least in sync first
    # reconciliation (twin_sync_quality, tests/seed.py): d's versions at -40, -35, -30, -10 min
    # (the one at -130 is outside the range); latencies 1500 and 250 ms
    recon = {k: d[k] for k in RECON_COLUMNS}
    assert recon == {
        "recon_versions": 4,
        "consistency_score": 1.0,
        "mean_consistency": Decimal("0.6875"),  # (0.5 + 0.25 + 1 + 1) / 4
        "min_consistency": 0.25,
        "synchronized_share": Decimal("0.5000"),
        "mean_sync_latency_ms": 875.0,
        "p95_sync_latency_ms": 1437.5,  # 250 + 0.95 × (1500 − 250)
        "max_sync_latency_ms": 1500.0,
        "max_conflicts": 2,
    }
    # twins without reconciliation rows are still there (left join), with nothing to report
    for twin in (fleet.f, fleet.h):
        assert {k: by[twin][k] for k in RECON_COLUMNS} == {
            "recon_versions": 0,
            **{k: None for k in RECON_COLUMNS if k != "recon_versions"},
        }


def test_alert_mtta_mttr(db, fleet: Fleet):
    rows = queries.run(db, "alert_mtta_mttr", since=fleet.at(-120), until=fleet.end, twins=fleet.twins)
    by = {(r["kind"], r["severity"]): r for r in rows}
    f_anomaly = by[("anomaly", "critical")]  # f: score 0.92 / threshold 0.5 = critical ratio
    assert (f_anomaly["alerts"], f_anomaly["acknowledged"], f_anomaly["resolved"]) == (1, 1, 1)
    assert float(f_anomaly["mtta_minutes"]) == 10.0
    # opened 2 min after the onset (-58), resolved 5 min after the recovery (-25)
    assert float(f_anomaly["mttr_minutes"]) == 33.0
    h_anomaly = by[("anomaly", "major")]  # h: spike 0.76 / 0.5 = major
    assert (h_anomaly["alerts"], h_anomaly["acknowledged"], h_anomaly["mtta_minutes"]) == (1, 0, None)
    assert float(h_anomaly["auto_resolved_share"]) == 1.0
    assert by[("failure", "critical")]["resolved"] == 0
    assert by[("desync", "major")]["alerts"] == 1
    assert by[("condition", "major")]["alerts"] == 1  # f: health 0.2 during its fault
    total = by[(None, None)]
    assert total["alerts"] == 5


def test_alarm_rate_per_operator_hour(db, fleet: Fleet):
    rows = queries.run(db, "alarm_rate", since=fleet.at(-120), until=fleet.end, twins=fleet.twins, operators=2)
    (r,) = rows
    opened = sum(1 for a in fleet.alerts if a.event == "opened")
    assert opened == 5 and r["annunciated"] == opened
    assert float(r["hours"]) == pytest.approx(2.0)
    assert float(r["per_operator_hour"]) == pytest.approx(opened / 2.0 / 2)
    assert r["flood_periods"] == 0 and 0 < float(r["peak_10min_per_operator"]) <= opened / 2
