"""Migrations 0010+ on TimescaleDB (WASM: hypertables, continuous aggregates, policies, roles)
and on native PostgreSQL (plain tables, date_bin views, roles and grants)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from connectors.postgres.migrate import MIGRATIONS_DIR, migrate
from twinflow.stack.timescale_wasm import TimescaleWasm

pytestmark = pytest.mark.integration

MINE = sorted(p for p in MIGRATIONS_DIR.glob("*.sql") if 10 <= int(p.name[:4]) <= 19)
HYPERTABLES = {"anomaly_scores", "forecasts", "failure_predictions", "alerts", "alert_events"}


@pytest.fixture(scope="module")
def timescale(stack_settings):
    svc = TimescaleWasm(stack_settings)
    if not (svc.running() and svc.healthy()):
        svc.up()
    return svc.conninfo()


def column(conn: psycopg.Connection, sql: str) -> list:
    return [r[0] for r in conn.execute(sql)]


def test_timescale_hypertables_caggs_policies_and_roles(timescale):
    migrate(timescale, timescaledb="on")
    with psycopg.connect(timescale) as conn:
        # idempotent: every migration of ours applies again without error or change
        for path in MINE:
            with conn.transaction():
                conn.execute(path.read_text())
        hyper = dict(
            conn.execute("SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables")
        )
        assert HYPERTABLES | {"telemetry"} <= set(hyper)
        assert hyper["anomaly_scores"] and hyper["forecasts"] and hyper["alert_events"]
        assert hyper["alerts"] is False  # updated in place (ack, resolve): never compressed
        caggs = dict(
            conn.execute(
                "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
                " WHERE view_name IN ('telemetry_1m', 'telemetry_1h')"
            )
        )
        assert caggs == {"telemetry_1m": False, "telemetry_1h": False}  # real-time aggregation
        jobs = set(
            conn.execute(
                "SELECT coalesce(j.hypertable_name, ''), j.proc_name FROM timescaledb_information.jobs j"
            ).fetchall()
        )
        cagg_tables = dict(
            conn.execute(
                "SELECT view_name, materialization_hypertable_name FROM timescaledb_information.continuous_aggregates"
            )
        )
        for view in ("telemetry_1m", "telemetry_1h"):
            # jobs on a continuous aggregate are reported under its view name
            names = {view, cagg_tables[view]}
            for proc in ("policy_refresh_continuous_aggregate", "policy_compression", "policy_retention"):
                assert any((n, proc) in jobs for n in names), (view, proc)
        for table in ("anomaly_scores", "forecasts", "failure_predictions", "alert_events"):
            assert {(table, "policy_compression"), (table, "policy_retention")} <= jobs, table
        # roles: created here (the WASM user is a superuser), reader read-only, writer writes
        privs = conn.execute(
            "SELECT has_table_privilege('twinflow_reader', 'alerts', 'SELECT'),"
            " has_table_privilege('twinflow_reader', 'alerts', 'INSERT'),"
            " has_table_privilege('twinflow_reader', 'telemetry_1h', 'SELECT'),"
            " has_table_privilege('twinflow_writer', 'anomaly_scores', 'INSERT'),"
            " has_table_privilege('twinflow_writer', 'alerts', 'UPDATE'),"
            " has_table_privilege('twinflow_writer', 'alerts', 'DELETE')"
        ).fetchone()
        assert privs == (True, False, True, True, True, False)
        # the real-time aggregate answers through the simple protocol
        twin = f"wasm-{uuid.uuid4().hex[:8]}"
        conn.execute(
            "INSERT INTO telemetry (twin_id, sensor, ts, value, seq, source) VALUES "
            f"('{twin}', 'rpm', now(), 10, 1, 'test'),"
            f" ('{twin}', 'rpm', now() - interval '1 second', 20, 2, 'test')"
        )
        row = conn.execute(f"SELECT sum(n), max(max_value) FROM telemetry_1h WHERE twin_id = '{twin}'").fetchone()
        assert row == (2, 20.0)


def test_plain_postgres_fallback_views_and_roles(stack_settings):
    conninfo = stack_settings.postgres.conninfo()
    migrate(conninfo, stack_settings.postgres.timescaledb)
    su = stack_settings.postgres.conninfo(
        user="postgres", password=stack_settings.stack.postgres_superuser_password.get_secret_value()
    )
    with psycopg.connect(conninfo) as conn:
        kinds = dict(
            conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c WHERE c.relname IN "
                "('telemetry_1m', 'telemetry_1h', 'alerts', 'anomaly_scores')"
            )
        )
        assert kinds == {"telemetry_1m": "v", "telemetry_1h": "v", "alerts": "r", "anomaly_scores": "r"}
        assert "date_bin" in conn.execute("SELECT pg_get_viewdef('telemetry_1m')").fetchone()[0]
        twin = f"plain-{uuid.uuid4().hex[:8]}"
        conn.execute(
            "INSERT INTO telemetry (twin_id, sensor, ts, value, seq, source) VALUES "
            "(%s, 'rpm', '2026-11-25 08:00:10Z', 1, 1, 't'), (%s, 'rpm', '2026-11-25 08:00:50Z', 3, 2, 't'),"
            "(%s, 'rpm', '2026-11-25 08:01:10Z', 5, 3, 't')",
            (twin, twin, twin),
        )
        rows = conn.execute(
            "SELECT bucket, n, avg_value FROM telemetry_1m WHERE twin_id = %s ORDER BY bucket", (twin,)
        ).fetchall()
        assert [(r[0].minute, r[1], r[2]) for r in rows] == [(0, 2, 2.0), (1, 1, 5.0)]
        conn.execute("DELETE FROM telemetry WHERE twin_id = %s", (twin,))
    # the migrating role may not create roles here: a superuser does, then re-runs the grants
    with psycopg.connect(su, autocommit=True) as admin:
        for role in ("twinflow_writer", "twinflow_reader"):
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                admin.execute(f"CREATE ROLE {role} NOLOGIN")
    with psycopg.connect(su, autocommit=True) as admin:
        assert "twinflow_reader" in admin.execute("SELECT twinflow_grant_roles()").fetchone()[0]
        admin.execute("SET ROLE twinflow_reader")
        assert admin.execute("SELECT count(*) >= 0 FROM alerts").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute("DELETE FROM anomaly_scores WHERE twin_id = 'nobody'")
        admin.execute("RESET ROLE")
        admin.execute("SET ROLE twinflow_writer")
        admin.execute("UPDATE alerts SET summary = summary WHERE alert_id = 'nobody'")
        admin.execute("RESET ROLE")
    with psycopg.connect(conninfo) as conn:  # the owner role still owns and writes everything
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'alerts'").fetchone()[0]
        assert owner == stack_settings.postgres.user
