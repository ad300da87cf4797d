"""Migrations 0002 and 0110 on TimescaleDB (WASM) and on plain PostgreSQL, inside rolled-back
transactions so the shared servers' schemas are left alone: 0002's sync-quality table (a hypertable
with a continuous aggregate on TimescaleDB), then 0110 turning it into a view of the twin's history
that keeps the points without a history version."""

from __future__ import annotations

import psycopg
import pytest

from connectors.postgres.migrate import MIGRATIONS_DIR
from tests.twin_fixtures import twin_db  # noqa: F401
from twinflow.settings import Settings, load_settings
from twinflow.stack.timescale_wasm import TimescaleWasm

pytestmark = pytest.mark.integration

# Two versions of m1 (literal SQL: the WASM server takes inserts only through the simple protocol).
HISTORY = (
    "INSERT INTO twin_state_history (twin_id, version, event_time, status, mode, learn, reported, desired, delta,"
    " conflicts, commands, consistency_score, sync_latency_ms, change) VALUES"
    " ('m1', 1, '2026-11-25T08:00:00Z', 'desynced', 'normal', true, '{}', '{}', '{}', '{p1}', '{}', 0.5, NULL, '{}'),"
    " ('m1', 2, '2026-11-25T08:10:00Z', 'synchronized', 'normal', true, '{}', '{}', '{}', '{}', '{}', 1.0, 1500,"
    " '{}')"
)
# 0002's table: the points the sink wrote with the versions, and one without a version (by hand).
OLD_POINTS = (
    "INSERT INTO twin_sync_quality VALUES"
    " ('m1', '2026-11-25T08:00:00Z', 1, 'desynced', 0.5, NULL, 1),"
    " ('m1', '2026-11-25T08:10:00Z', 2, 'synchronized', 1.0, 1500, 0),"
    " ('m9', '2026-11-25T08:00:00Z', 7, 'desynced', 0.0, NULL, 3)"
)


def kinds(conn: psycopg.Connection) -> dict[str, str]:
    """Tables and views named twin_sync_quality… (their kind: r, v)."""
    rows = conn.execute(
        "SELECT relname, relkind FROM pg_class WHERE relname LIKE 'twin_sync_quality%' AND relkind IN ('r', 'v')"
    )
    return dict(rows.fetchall())


def old_shape(conn: psycopg.Connection) -> None:
    """Back to the sync-quality table of 0002, in the caller's transaction."""
    conn.execute("DROP VIEW IF EXISTS twin_sync_quality_hourly; DROP VIEW IF EXISTS twin_sync_quality")
    if conn.execute("SELECT to_regclass('telemetry')").fetchone()[0] is None:
        conn.execute((MIGRATIONS_DIR / "0001_telemetry.sql").read_text())
    conn.execute((MIGRATIONS_DIR / "0002_twin_state.sql").read_text())


def to_0110(conn: psycopg.Connection) -> None:
    """0110 on the versions and points above: the points come from the history, the one without a
    version stays in the renamed table; applied again, nothing changes."""
    conn.execute(HISTORY)
    conn.execute(OLD_POINTS)
    for _ in range(2):
        conn.execute((MIGRATIONS_DIR / "0110_sync_quality_from_history.sql").read_text())
    assert kinds(conn) == {"twin_sync_quality": "v", "twin_sync_quality_hourly": "v", "twin_sync_quality_0110": "r"}
    points = conn.execute(
        "SELECT twin_id, ts::text, version, status, consistency_score, sync_latency_ms, conflicts"
        " FROM twin_sync_quality WHERE twin_id IN ('m1', 'm9') ORDER BY version"
    ).fetchall()
    assert points == [
        ("m1", "2026-11-25 08:00:00+00", 1, "desynced", 0.5, None, 1),
        ("m1", "2026-11-25 08:10:00+00", 2, "synchronized", 1.0, 1500.0, 0),
    ]
    assert conn.execute("SELECT twin_id, version FROM twin_sync_quality_0110 WHERE twin_id = 'm9'").fetchall() == [
        ("m9", 7)
    ]
    hourly = conn.execute(
        "SELECT mean_consistency, max_sync_latency_ms, synchronized_share FROM twin_sync_quality_hourly"
        " WHERE twin_id = 'm1'"
    ).fetchone()
    assert hourly == (0.75, 1500.0, 0.5)


def test_0002_then_0110_on_timescaledb() -> None:
    svc = TimescaleWasm(load_settings())
    if not svc.healthy():  # the shared stack may run from another checkout: health, not pid files
        svc.up()
    with psycopg.connect(svc.conninfo()) as conn:  # one transaction, rolled back on exit below
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        old_shape(conn)
        hyper = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        caggs = {r[0] for r in conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates")}
        views = {r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE viewname LIKE 'twin_%'")}
        assert {"telemetry_windows", "twin_sync_quality"} <= hyper
        assert "twin_sync_quality_hourly" in caggs
        assert "twin_state_current" in views
        to_0110(conn)
        caggs = {r[0] for r in conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates")}
        assert "twin_sync_quality_hourly" not in caggs
        conn.rollback()


def test_0002_then_0110_on_plain_postgresql(twin_db: Settings) -> None:  # noqa: F811
    with psycopg.connect(twin_db.postgres.conninfo()) as conn:
        assert kinds(conn) == {"twin_sync_quality": "v", "twin_sync_quality_hourly": "v"}  # migrated: views
        old_shape(conn)
        assert kinds(conn) == {"twin_sync_quality": "r", "twin_sync_quality_hourly": "v"}
        to_0110(conn)
        brin = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'twin_state_history_event_time_brin'"
        ).fetchone()
        assert brin is not None and "brin (event_time)" in brin[0]
        conn.rollback()
