"""The migrations' TimescaleDB path on a real TimescaleDB (WASM), and the plain-PostgreSQL path."""

import psycopg
import pytest

from connectors.postgres.migrate import MIGRATIONS_DIR, migrate
from twinflow.stack.timescale_wasm import TimescaleWasm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def timescale(stack_settings):
    svc = TimescaleWasm(stack_settings)
    if not (svc.running() and svc.healthy()):
        svc.up()
    return svc.conninfo()


def test_migrations_create_hypertable_with_policies(timescale):
    migrate(timescale, timescaledb="on")
    assert migrate(timescale, timescaledb="on") == []  # re-running applies nothing
    with psycopg.connect(timescale) as conn:
        hyper = conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        ).fetchall()
        assert ("telemetry", True) in hyper
        jobs = {
            r[0]
            for r in conn.execute(
                "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name = 'telemetry'"
            )
        }
        assert {"policy_compression", "policy_retention"} <= jobs
        dims = conn.execute(
            "SELECT column_name FROM timescaledb_information.dimensions WHERE hypertable_name = 'telemetry'"
        ).fetchall()
        assert dims == [("ts",)]
        # Reads work through the simple protocol (what the WASM server supports for hypertables).
        conn.execute(
            "INSERT INTO telemetry (twin_id, sensor, ts, value, seq, source) "
            "VALUES ('wasm-1', 'rpm', now(), 1.5, 1, 'test')"
        )
        row = conn.execute(
            "SELECT twin_id, time_bucket('1 minute', ts) IS NOT NULL FROM telemetry WHERE twin_id='wasm-1'"
        ).fetchone()
        assert row == ("wasm-1", True)


def test_plain_postgres_path_uses_brin(stack_settings):
    with psycopg.connect(stack_settings.postgres.conninfo()) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname='timescaledb'").fetchone() is None
        idx = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename='telemetry' AND indexname='telemetry_ts_brin'"
        ).fetchone()
        assert idx is not None and "brin" in idx[0]
        versions = [r[0] for r in conn.execute("SELECT version FROM twinflow_migrations ORDER BY 1")]
        assert versions and versions[0] == 1


def telemetry_indexes(conninfo: str) -> dict[str, str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'telemetry'").fetchall()
    return dict(rows)


@pytest.mark.parametrize("server", ["plain", "timescale"])
def test_telemetry_has_one_key_for_both_read_shapes(server, stack_settings, request):
    """0090: the primary key (twin_id, ts, sensor) replaces (twin_id, sensor, ts) + telemetry_twin_ts, on
    plain PostgreSQL and on a hypertable; the file re-applied changes nothing; a repeated reading is
    still one row (ON CONFLICT on the identity's columns finds the key)."""
    if server == "timescale":
        conninfo = request.getfixturevalue("timescale")
        migrate(conninfo, timescaledb="on")
    else:
        conninfo = stack_settings.postgres.conninfo()
    indexes = telemetry_indexes(conninfo)
    assert "telemetry_twin_ts" not in indexes
    assert indexes["telemetry_pkey"].endswith("USING btree (twin_id, ts, sensor)")
    with psycopg.connect(conninfo) as conn:
        conn.execute((MIGRATIONS_DIR / "0090_telemetry_one_key.sql").read_text())
        conn.commit()
        for _ in range(2):
            conn.execute(
                "INSERT INTO telemetry (twin_id, sensor, ts, value, seq, source) VALUES "
                "('key-1', 'a', '2026-01-01', 1, 1, 'test'), ('key-1', 'b', '2026-01-01', 1, 1, 'test') "
                "ON CONFLICT (twin_id, sensor, ts) DO NOTHING"
            )
        assert conn.execute("SELECT count(*) FROM telemetry WHERE twin_id = 'key-1'").fetchone() == (2,)
        conn.rollback()
    assert telemetry_indexes(conninfo) == indexes


@pytest.mark.parametrize("server", ["plain", "timescale"])
def test_model_outputs_have_one_btree_for_their_reads(server, stack_settings, request):
    """0100: anomaly_scores and failure_predictions keep their key (twin_id, ts; since 0140 with model)
    and lose the B-tree on (twin_id, ts DESC) it duplicated; the newest score of a twin (the built-in
    models', as the API reads it) is still read from the key, backwards."""
    if server == "timescale":
        conninfo = request.getfixturevalue("timescale")
        migrate(conninfo, timescaledb="on")
    else:
        conninfo = stack_settings.postgres.conninfo()
    with psycopg.connect(conninfo) as conn:
        for name in ("0100_model_outputs_one_key.sql", "0140_model_outputs_per_model.sql"):  # re-applied: no change
            conn.execute((MIGRATIONS_DIR / name).read_text())
        defs = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE tablename IN ('anomaly_scores', 'failure_predictions')"
            ).fetchall()
        )
        for table in ("anomaly_scores", "failure_predictions"):
            assert defs[f"{table}_pkey"].endswith("USING btree (twin_id, ts, model)")
            assert f"{table}_twin_ts" not in defs
        conn.execute(
            "INSERT INTO anomaly_scores (twin_id, ts, score, threshold, is_anomaly)"
            " VALUES ('p-1', now(), 0.1, 0.9, false)"
        )
        for knob in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):  # a tiny table: show what the key can do
            conn.execute(f"SET {knob} = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT * FROM anomaly_scores WHERE twin_id = 'p-1'"
                " AND twinflow_model_source(model) = 'twinflow' ORDER BY ts DESC LIMIT 10"
            )
        )
        assert "Index Scan Backward" in plan and "anomaly_scores_pkey" in plan, plan
        conn.rollback()
