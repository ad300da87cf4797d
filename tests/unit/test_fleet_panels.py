"""The fleet overview's health table and predicted-failure panels run the named queries fleet_health.sql
and predicted_failures.sql, not drifting copies, and the health panels read the columns of migration 0070."""

from __future__ import annotations

from tests.grafana_sql import load_dashboard, panel_queries
from twinflow.queries import load
from twinflow.settings import PROJECT_ROOT

DASHBOARDS = PROJECT_ROOT / "grafana" / "dashboards"


def filled(name: str, **values: str) -> str:
    """The named query as a panel runs it: without its comments, each parameter written in."""
    body = "\n".join(line for line in load(name).splitlines() if not line.startswith("--")).strip().rstrip(";")
    for param, value in values.items():
        body = body.replace(f"%({param})s", value)
    assert "%(" not in body, body
    return body


def test_fleet_health_table_is_the_named_query():
    dashboard = load_dashboard(DASHBOARDS / "fleet-overview.json")
    [table] = [q for q in panel_queries(dashboard) if q.panel == "Fleet health now"]
    assert table.raw_sql == filled("fleet_health", twins="NULL", stale_after="'5 minutes'")
    assert "health" in table.raw_sql and "sensor_faults" in table.raw_sql


def test_predicted_failure_panels_are_the_named_query():
    panels = {q.panel: q.raw_sql for q in panel_queries(load_dashboard(DASHBOARDS / "fleet-overview.json"))}
    body = filled("predicted_failures", twins="NULL", within_h="24", min_probability="0.5", source="'twinflow'",
                  limit="NULL")  # fmt: skip
    assert panels["Predicted failures in the next 24 h"] == body
    assert panels["Predicted failures (next 24 h)"] == f"SELECT count(*) AS twins FROM ({body}) f"


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
