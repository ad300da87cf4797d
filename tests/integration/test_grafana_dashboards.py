"""Every SQL query of every provisioned dashboard runs on the test database and returns rows.

Grafana cannot run here: the panel SQL is read from the dashboard JSON, Grafana's macros and
template variables are expanded by tests/grafana_sql.py, and the SQL runs on native PostgreSQL
seeded with a known fleet (tests/seed.py).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from connectors.postgres.migrate import migrate
from tests.grafana_sql import (
    Context,
    current_values,
    expand,
    load_dashboard,
    panel_queries,
    time_range,
    variables,
)
from tests.seed import Fleet, delete, seed
from twinflow.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration
DASHBOARDS = sorted((PROJECT_ROOT / "grafana" / "dashboards").glob("*.json"))
QUERIES = [(path, q) for path in DASHBOARDS for q in panel_queries(load_dashboard(path))]


@pytest.fixture(scope="module")
def fleet(stack_settings):
    conninfo = stack_settings.postgres.conninfo()
    migrate(conninfo, stack_settings.postgres.timescaledb)
    fl = seed(conninfo, uuid.uuid4().hex[:8])
    yield fl
    delete(conninfo, fl)


@pytest.fixture(scope="module")
def db(stack_settings, fleet):
    """A read-only session, as Grafana's data source should have: the twinflow_reader role."""
    su = stack_settings.postgres.conninfo(
        user="postgres", password=stack_settings.stack.postgres_superuser_password.get_secret_value()
    )
    with psycopg.connect(su, autocommit=True) as conn:
        for role in ("twinflow_writer", "twinflow_reader"):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                conn.execute(f"CREATE ROLE {role} NOLOGIN")
        conn.execute("SELECT twinflow_grant_roles()")
        conn.execute("SET ROLE twinflow_reader")
        yield conn


def resolve_variables(dashboard: dict, db: psycopg.Connection, ctx: Context, overrides: dict) -> dict:
    """Like Grafana on load: run each variable's query, keep the saved value if it is an option,
    else take the first option; '$__all' selects every option."""
    for var in variables(dashboard):
        name = var["name"]
        if var["type"] == "custom":
            options = [o.strip() for o in var["query"].split(",")]
        else:
            options = [str(r[0]) for r in db.execute(expand(var["query"], ctx))]
            assert options, f"{dashboard['title']}: variable ${name} has no options"
        if name in overrides:
            assert overrides[name] in options, (name, overrides[name])
            chosen = [overrides[name]]
        else:
            saved = current_values(var)
            kept = [v for v in saved if v in options] or options[:1]
            chosen = options if saved == ["$__all"] else kept
        ctx.variables[name] = chosen
    return ctx.variables


def test_every_dashboard_has_sql_panels_on_the_provisioned_data_source():
    names = {p.stem for p in DASHBOARDS}
    assert {"fleet-overview", "twin-detail", "sync-quality", "alert-history"} <= names
    ds = (PROJECT_ROOT / "grafana/provisioning/datasources/twinflow.yml").read_text()
    uid = re.search(r"^\s+uid:\s*(\S+)", ds, re.M).group(1)
    provider = (PROJECT_ROOT / "grafana/provisioning/dashboards/twinflow.yml").read_text()
    path_in_container = re.search(r"^\s+path:\s*(\S+)", provider, re.M).group(1)
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert f"./grafana/dashboards:{path_in_container}:ro" in compose
    uids = set()
    for path in DASHBOARDS:
        d = load_dashboard(path)
        uids.add(d["uid"])
        for p in d["panels"]:
            assert p["datasource"]["uid"] == uid, (path.name, p["title"])
            assert all(t["datasource"]["uid"] == uid for t in p["targets"])
        assert sum(1 for _ in panel_queries(d)) == sum(len(p["targets"]) for p in d["panels"]) + sum(
            1 for a in d["annotations"]["list"] if "target" in a
        )
    assert len(uids) == len(DASHBOARDS)


@pytest.mark.parametrize(("path", "query"), QUERIES, ids=[f"{p.stem}:{q.panel}" for p, q in QUERIES])
def test_panel_query_returns_rows(path: Path, query, fleet: Fleet, db):
    dashboard = load_dashboard(path)
    start, end = time_range(dashboard, datetime.now(UTC))
    ctx = Context(start, end, interval_s=60)
    resolve_variables(dashboard, db, ctx, {"twin": fleet.f})
    sql = expand(query.raw_sql, ctx)
    assert "$" not in sql.replace("$$", ""), f"unexpanded macro or variable in {query.panel}: {sql}"
    rows = db.execute(sql).fetchall()
    assert rows, f"{path.name} / {query.panel}: no rows\n{sql}"


def test_panel_queries_are_valid_on_timescaledb(stack_settings):
    """The same SQL with Grafana's TimescaleDB macros (time_bucket) against the continuous
    aggregates on TimescaleDB-in-WASM (read-only, simple protocol; rows are not asserted there)."""
    from twinflow.stack.timescale_wasm import TimescaleWasm

    svc = TimescaleWasm(stack_settings)
    if not (svc.running() and svc.healthy()):
        svc.up()
    migrate(svc.conninfo(), timescaledb="on")
    with psycopg.connect(svc.conninfo(), autocommit=True) as conn:
        for path, query in QUERIES:
            dashboard = load_dashboard(path)
            start, end = time_range(dashboard, datetime.now(UTC))
            ctx = Context(start, end, interval_s=60, timescaledb=True)
            ctx.variables.update(
                {"twin": ["wasm-probe"], "sensor": ["rpm", "temp_c"], "kind": ["anomaly"], "model": ["twinflow"]}
            )
            sql = expand(query.raw_sql, ctx)
            assert "time_bucket(" in sql or "$__timeGroup" not in query.raw_sql
            try:
                conn.execute(sql).fetchall()
            except psycopg.Error as exc:
                pytest.fail(f"{path.name} / {query.panel} fails on TimescaleDB: {exc}\n{sql}")
