"""Migration 0140 on data written before it, on plain PostgreSQL and on TimescaleDB (WASM) hypertables.

Each run migrates a schema of its own up to 0135 (the WASM server takes no ``search_path`` at
connect, so the files run in one session, in order, as ``twinflow db migrate`` runs them), writes
model outputs as the sinks did then (on TimescaleDB: and compresses their chunks), then applies
0140, twice: the rows are kept with their model (none named: ``''``), each key ends with
``model``, a second model's row of the same instant is stored beside the first, and a repeated
row of the same model is not (``ON CONFLICT`` on the sinks' conflict targets).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from connectors.postgres.alert_sinks import FAILURES, FORECASTS, SCORES
from connectors.postgres.migrate import discover
from operators.records.alerts import source_of
from tests.db_helpers import private_db  # noqa: F401
from twinflow.stack.timescale_wasm import TimescaleWasm

pytestmark = pytest.mark.integration
BEFORE = [m for m in discover() if m.version < 140]
(KEYED,) = [m for m in discover() if m.version == 140]
TS = "2026-12-01T00:00:00Z"
OLD_ROWS = (  # as the sinks wrote them before 0140 (anomaly_scores had a model; the others had none)
    "INSERT INTO anomaly_scores (twin_id, ts, score, threshold, is_anomaly, model) VALUES"
    f" ('p1', '{TS}', 0.2, 0.5, false, 'twinflow-t2'), ('p2', '{TS}', 0.3, 0.5, false, '')",
    f"INSERT INTO failure_predictions (twin_id, ts, rul_s, failure_probability) VALUES ('p1', '{TS}', 3600, 0.2)",
    f"INSERT INTO forecasts (twin_id, sensor, ts, target_ts, predicted) VALUES ('p1', 't', '{TS}', '{TS}', 61)",
)
# a model of your own's rows of the same instants, each twice (a replay)
NEW_ROWS = (
    "INSERT INTO anomaly_scores (twin_id, ts, score, threshold, is_anomaly, model) VALUES"
    f" ('p1', '{TS}', 0.9, 0.5, true, 'vib-lstm')",
    f"INSERT INTO failure_predictions (twin_id, ts, rul_s, failure_probability, model) VALUES ('p1', '{TS}', 60,"
    " 0.9, 'vib-rul')",
    "INSERT INTO forecasts (twin_id, sensor, ts, target_ts, predicted, model) VALUES"
    f" ('p1', 't', '{TS}', '{TS}', 99, 'vib-lstm')",
)


@pytest.fixture(params=["plain", "timescale"])
def db(request, stack_settings) -> Iterator[tuple[psycopg.Connection, bool]]:
    """A session in a new schema holding the migrations before 0140; whether it is TimescaleDB."""
    if request.param == "plain":
        conninfo = request.getfixturevalue("private_db").postgres.conninfo()
    else:
        svc = TimescaleWasm(stack_settings)
        if not (svc.running() and svc.healthy()):
            svc.up()
        conninfo = svc.conninfo()
    schema = sql.Identifier(f"mk_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        timescale = request.param == "timescale"
        if timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(sql.SQL("SET search_path TO {}, public").format(schema))
        try:
            for m in BEFORE:
                conn.execute(m.sql)
            yield conn, timescale
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


def keys(conn: psycopg.Connection) -> dict[str, str]:
    return {
        table: conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            (table,),
        ).fetchone()[0]
        for table in ("anomaly_scores", "failure_predictions", "forecasts")
    }


def rows(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {
        "anomaly_scores": conn.execute("SELECT twin_id, model, score FROM anomaly_scores ORDER BY 1, 2").fetchall(),
        "failure_predictions": conn.execute("SELECT model, rul_s FROM failure_predictions ORDER BY 1").fetchall(),
        "forecasts": conn.execute("SELECT model, predicted FROM forecasts ORDER BY 1").fetchall(),
    }


def test_0140_keeps_the_rows_and_keys_each_table_by_model(db) -> None:
    conn, timescale = db
    for statement in OLD_ROWS:
        conn.execute(statement)
    if timescale:
        for table in ("anomaly_scores", "failure_predictions", "forecasts"):
            conn.execute(f"SELECT compress_chunk(c) FROM show_chunks('{table}') c")
        compressed = "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = current_schema()"
        assert conn.execute(compressed + " AND is_compressed").fetchone() == (3,)
    before = {
        "anomaly_scores": [("p1", "twinflow-t2", 0.2), ("p2", "", 0.3)],
        "failure_predictions": [("", 3600.0)],
        "forecasts": [("", 61.0)],
    }
    conn.execute(KEYED.sql)
    conn.execute(KEYED.sql)  # safe to re-run
    assert rows(conn) == before
    assert keys(conn) == {
        "anomaly_scores": "PRIMARY KEY (twin_id, ts, model)",
        "failure_predictions": "PRIMARY KEY (twin_id, ts, model)",
        "forecasts": "PRIMARY KEY (twin_id, sensor, ts, target_ts, model)",
    }
    # the sinks' conflict targets are the keys: a replayed row finds its own, another model's is new
    targets = {spec.table: spec.key for spec in (SCORES, FAILURES, FORECASTS)}
    assert {t: f"PRIMARY KEY ({', '.join(k)})" for t, k in targets.items()} == keys(conn)
    for statement, key in zip(NEW_ROWS, targets.values(), strict=True):
        for _ in range(2):
            conn.execute(f"{statement} ON CONFLICT ({', '.join(key)}) DO NOTHING")
    assert rows(conn) == {
        "anomaly_scores": [*before["anomaly_scores"][:1], ("p1", "vib-lstm", 0.9), before["anomaly_scores"][1]],
        "failure_predictions": [*before["failure_predictions"], ("vib-rul", 60.0)],
        "forecasts": [*before["forecasts"], ("vib-lstm", 99.0)],
    }
    # a row's source in SQL is the alerts flow's source_of
    names = ["", "twinflow", "twinflow-t2", "twinflow-t2-rul:pumps", "twinflowx", "vib-lstm"]
    sources = conn.execute("SELECT twinflow_model_source(m) FROM unnest(%s::text[]) AS m", (names,)).fetchall()
    assert [s for (s,) in sources] == [source_of(m) for m in names]
    assert conn.execute("SELECT twin_id, score FROM twin_health ORDER BY 1").fetchall() == [("p1", 0.2), ("p2", 0.3)]
