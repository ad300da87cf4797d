"""Migration 0002 on TimescaleDB (WASM): hypertables and continuous aggregates, inside a rolled-back
transaction so the shared server's migration history is left alone; and the plain-PostgreSQL path."""

from __future__ import annotations

import psycopg
import pytest

from connectors.postgres.migrate import MIGRATIONS_DIR
from tests.twin_fixtures import twin_db  # noqa: F401
from twinflow.settings import Settings, load_settings
from twinflow.stack.timescale_wasm import TimescaleWasm

pytestmark = pytest.mark.integration


def test_0002_on_timescaledb_creates_hypertables_and_continuous_aggregates() -> None:
    svc = TimescaleWasm(load_settings())
    if not svc.healthy():  # the shared stack may run from another checkout: health, not pid files
        svc.up()
    with psycopg.connect(svc.conninfo()) as conn:  # one transaction, rolled back on exit below
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if conn.execute("SELECT to_regclass('telemetry')").fetchone()[0] is None:
            conn.execute((MIGRATIONS_DIR / "0001_telemetry.sql").read_text())
        conn.execute((MIGRATIONS_DIR / "0002_twin_state.sql").read_text())
        hyper = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        caggs = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT view_name, hypertable_name FROM timescaledb_information.continuous_aggregates"
            )
        }
        views = {r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE viewname LIKE 'twin_%'")}
        conn.rollback()
    assert {"telemetry_windows", "twin_sync_quality"} <= hyper
    assert "twin_sync_quality_hourly" in set(caggs)
    assert "twin_state_current" in views


def test_0002_on_plain_postgresql_has_the_same_names_as_views(twin_db: Settings) -> None:  # noqa: F811
    with psycopg.connect(twin_db.postgres.conninfo()) as conn:
        views = {r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
        conn.execute(
            "INSERT INTO twin_sync_quality VALUES"
            " ('m1', '2026-11-25T08:00:00Z', 1, 'desynced', 0.5, NULL, 1),"
            " ('m1', '2026-11-25T08:10:00Z', 2, 'synchronized', 1.0, 1500, 0)"
        )
        row = conn.execute(
            "SELECT mean_consistency, max_sync_latency_ms, synchronized_share FROM twin_sync_quality_hourly"
            " WHERE twin_id = 'm1'"
        ).fetchone()
        conn.rollback()
    assert {"twin_state_current", "twin_sync_quality_hourly"} <= views
    assert row == (0.75, 1500.0, 0.5)
