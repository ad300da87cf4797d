"""The sync-quality dashboard's table runs the named query sync_quality.sql, not a drifting copy."""

from __future__ import annotations

from tests.grafana_sql import load_dashboard, panel_queries
from twinflow.queries import load
from twinflow.settings import PROJECT_ROOT


def test_table_panel_is_the_named_query_with_grafana_time_range():
    dashboard = load_dashboard(PROJECT_ROOT / "grafana" / "dashboards" / "sync-quality.json")
    [table] = [q for q in panel_queries(dashboard) if q.panel == "Sync quality per twin"]
    body = "\n".join(line for line in load("sync_quality").splitlines() if not line.startswith("--"))
    expected = (
        body.strip()
        .rstrip(";")
        .replace("%(since)s", "$__timeFrom()::timestamptz")
        .replace("%(until)s", "$__timeTo()::timestamptz")
        .replace("%(twins)s", "NULL")
    )
    assert table.raw_sql == expected
    assert "twin_sync_quality" in table.raw_sql and "consistency_score" in table.raw_sql
