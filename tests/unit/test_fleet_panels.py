"""The fleet overview's health table runs the named query fleet_health.sql, not a drifting copy, and
the health panels read the columns of migration 0070."""

from __future__ import annotations

from tests.grafana_sql import load_dashboard, panel_queries
from twinflow.queries import load
from twinflow.settings import PROJECT_ROOT

DASHBOARDS = PROJECT_ROOT / "grafana" / "dashboards"


def test_fleet_health_table_is_the_named_query():
    dashboard = load_dashboard(DASHBOARDS / "fleet-overview.json")
    [table] = [q for q in panel_queries(dashboard) if q.panel == "Fleet health now"]
    body = "\n".join(line for line in load("fleet_health").splitlines() if not line.startswith("--"))
    expected = body.strip().rstrip(";").replace("%(twins)s", "NULL").replace("%(stale_after)s", "'5 minutes'")
    assert table.raw_sql == expected
    assert "health" in table.raw_sql and "sensor_faults" in table.raw_sql


def test_health_panels_read_the_condition_columns():
    migration = (PROJECT_ROOT / "sql" / "migrations" / "0070_condition_health.sql").read_text()
    for column in ("health", "drivers", "sensor_faults", "kind"):
        assert f"ADD COLUMN IF NOT EXISTS {column} " in migration
    fleet = {q.panel: q.raw_sql for q in panel_queries(load_dashboard(DASHBOARDS / "fleet-overview.json"))}
    twin = {q.panel: q.raw_sql for q in panel_queries(load_dashboard(DASHBOARDS / "twin-detail.json"))}
    assert "FROM twin_health" in fleet["Least healthy twins now (drivers and faulty sensors)"]
    assert "health" in fleet["Health index by twin (1 = as at the healthy reference)"]
    assert "health" in twin["Health index (condition against the healthy reference)"]
    assert "sensor_faults" in twin["Sensors that drive the health, and sensor faults"]
