"""Every PostgreSQL sink keeps the PostgresSink contract on the real database: a batch delivered again
(as Bytewax delivers it: lists of records, repeats inside one batch, split into transactions of
``batch_size``; and replayed in reverse, older versions after newer ones) leaves the rows of one
delivery."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
import psycopg
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from psycopg import sql

from connectors.overlap import OverlappedSink
from connectors.postgres.alert_sinks import AlertSink, ModelOutputSink
from connectors.postgres.sink import PostgresSink
from connectors.postgres.telemetry_sink import TelemetrySink
from connectors.postgres.twin_sink import TwinSink
from flows.outputs import output
from operators.records.alerts import Alert, AnomalyScore, FailurePrediction, ForecastPoint
from operators.records.twin import encode
from operators.telemetry.ingest import TelemetryRow, TypedRow
from operators.twin.event_windows import WindowRow
from operators.twin.state import StateChange
from tests.db_helpers import superuser_conninfo

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "sql" / "migrations"

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The rows a sink's records end up as, per table, without write-time columns.
TABLES = {
    TelemetrySink: [("telemetry", "sensor, ts, value, seq, quality, source, value_type, status, text_value")],
    TwinSink: [
        ("twin_state_history", "version, event_time, status, reported, change"),
        ("twin_sync_quality", "ts, version, status, consistency_score, conflicts"),
        ("telemetry_windows", "sensor, window_size, window_start, count, mean, version"),
    ],
    AlertSink: [
        ("alerts", "state, severity, version, acked_by, isa_state"),
        ("alert_events", "version, event, state"),
    ],
    ModelOutputSink: [
        ("anomaly_scores", "ts, score, is_anomaly, contributions"),
        ("forecasts", "sensor, ts, target_ts, predicted"),
        ("failure_predictions", "ts, rul_s, failure_probability"),
    ],
}


def telemetry(twin: str) -> list:
    rows = [TelemetryRow(twin, "a", T0 + timedelta(seconds=i), float(i), i, 0, "test") for i in range(7)]
    return [*rows, TypedRow(twin, "on", T0, 1.0, 1, 0, "test", 1, None, None)]


def twin_items(twin: str) -> list:
    def change(version: int) -> StateChange:
        snapshot = {
            "status": "synchronized", "mode": "normal", "learn": True, "reported": {"x": {"value": version}},
            "desired": {}, "delta": {}, "conflicts": [], "commands": {}, "consistency_score": 1.0,
            "sync_latency_ms": None, "last_sync_time": None, "desync_since": None,
        }  # fmt: skip
        published = {**snapshot, "change": {"cause": "test"}}
        return StateChange(twin, version, T0 + timedelta(seconds=version), published, encode(published))

    def window(version: int, mean: float) -> WindowRow:
        return WindowRow(twin, "x", "1m", T0, T0 + timedelta(minutes=1), version, mean, 0.0, 9.0, mean, None, version)

    return [change(1), change(2), window(1, 1.0), window(2, 2.0)]


def alerts(twin: str) -> list:
    opened = Alert(
        f"al-{twin}", twin, "anomaly", "open", "major", 1, "opened", T0, T0, summary="test"
    )  # fmt: skip
    acked = Alert(
        f"al-{twin}", twin, "anomaly", "acknowledged", "major", 2, "acknowledged", T0, T0 + timedelta(seconds=5),
        acked_at=T0 + timedelta(seconds=5), acked_by="ann", isa_state="ack_active",
    )  # fmt: skip
    return [opened, acked]


def model_outputs(twin: str) -> list:
    return [
        AnomalyScore(twin, T0, 0.9, 0.5, True, {"x": 1.0}, "test"),
        ForecastPoint(twin, "x", T0, T0 + timedelta(minutes=1), 3.0),
        FailurePrediction(twin, T0, 3600.0, 0.1),
    ]


CASES: list[tuple[type[PostgresSink], Callable[[str], list]]] = [
    (TelemetrySink, telemetry),
    (TwinSink, twin_items),
    (AlertSink, alerts),
    (ModelOutputSink, model_outputs),
]


def stored(conninfo: str, sink: type[PostgresSink], twin: str) -> dict[str, list[tuple]]:
    query = sql.SQL("SELECT {cols} FROM {table} WHERE twin_id = %s ORDER BY {cols}")
    with psycopg.connect(conninfo) as db:
        return {
            table: db.execute(query.format(cols=sql.SQL(cols), table=sql.Identifier(table)), (twin,)).fetchall()
            for table, cols in TABLES[sink]
        }


@pytest.mark.parametrize(("sink", "records"), CASES, ids=[s.__name__ for s, _ in CASES])
def test_a_batch_delivered_again_leaves_the_rows_of_one_delivery(stack_settings, unique, sink, records):
    conninfo = stack_settings.postgres.conninfo()
    once, twice = f"once-{unique}", f"twice-{unique}"

    writer = sink(conninfo).open()
    assert writer.write(records(once)) > 0
    writer.close()

    # Bytewax's way: lists and single records, repeats inside the batch, 3 records per transaction.
    partition = sink(conninfo, batch_size=3).build("test_step", 0, 1)
    repeated = records(twice)
    partition.write_batch([repeated, *repeated])
    partition.write_batch([repeated])
    partition.close()
    assert partition.received == 3 * len(repeated)
    # A replay in reverse, one record per transaction: older versions arrive after newer ones.
    late = sink(conninfo, batch_size=1).open()
    late.write(repeated[::-1])
    late.close()

    first = stored(conninfo, sink, once)
    assert all(first.values()), first  # every table got rows
    assert stored(conninfo, sink, twice) == first


@pytest.mark.parametrize("sink", [s for s, _ in CASES], ids=[s.__name__ for s, _ in CASES])
def test_a_sink_connection_is_named_after_its_writer(stack_settings, sink):
    """``pg_stat_activity`` tells the writers apart: application_name ``twinflow <sink class>``."""
    conninfo = stack_settings.postgres.conninfo()
    writer = sink(conninfo).open()
    try:
        pid = writer.destination.connect().info.backend_pid
        with psycopg.connect(conninfo) as db:
            (name,) = db.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    finally:
        writer.close()
    assert name == f"twinflow {sink.__name__}"


class SlowTelemetrySink(TelemetrySink):
    """Each transaction waits 0.3 s on the server first: a write still in flight is visible."""

    def write(self, conn: psycopg.Connection, rows: Sequence[TelemetryRow | TypedRow]) -> int:
        conn.execute("SELECT pg_sleep(0.3)")
        return super().write(conn, rows)


class BrokenTelemetrySink(TelemetrySink):
    """Fails on its second batch (not a connection loss: no retry)."""

    def write(self, conn: psycopg.Connection, rows: Sequence[TelemetryRow | TypedRow]) -> int:
        if rows[0].twin_id.startswith("broken-"):
            raise ValueError("a batch the database refuses")
        return super().write(conn, rows)


@pytest.mark.parametrize(("sink", "records"), CASES, ids=[s.__name__ for s, _ in CASES])
def test_in_the_background_a_twin_keeps_one_partition_and_the_same_rows(stack_settings, unique, sink, records):
    conninfo = stack_settings.postgres.conninfo()
    reference, twins = f"ref-{unique}", [f"bg{i}-{unique}" for i in range(12)]  # 12: never all in one partition
    sink(conninfo).open().write(records(reference))

    overlapped = OverlappedSink(sink(conninfo, batch_size=3), partitions=3)
    routed = overlapped.route([r for twin in twins for r in records(twin)])
    part_of: dict[str, str] = {}
    for part, records_of_part in routed:
        for r in records_of_part:
            assert part_of.setdefault(r.twin_id, part) == part  # no twin in two partitions
    assert len(set(part_of.values())) > 1
    parts = {part: overlapped.build_part("test_step", part, None) for part, _ in routed}
    for part, records_of_part in routed:
        parts[part].write_batch([records_of_part])
        parts[part].write_batch([records_of_part])  # the same batch again: idempotent
    for partition in parts.values():
        partition.snapshot()
        partition.close()
    expected = stored(conninfo, sink, reference)
    for twin in twins:
        got = stored(conninfo, sink, twin)
        assert got == expected, twin


def test_the_snapshot_returns_after_the_writes_in_flight(stack_settings, unique):
    conninfo = stack_settings.postgres.conninfo()
    partition = OverlappedSink(SlowTelemetrySink(conninfo)).build_part("test_step", "00", None)
    partition.write_batch([telemetry(f"a-{unique}")])
    partition.write_batch([telemetry(f"b-{unique}")])
    assert partition.snapshot() is None  # Bytewax commits the epoch only after this
    assert all(stored(conninfo, TelemetrySink, f"{t}-{unique}")["telemetry"] for t in "ab")
    partition.write_batch([telemetry(f"c-{unique}")])
    partition.close()  # the end of the flow, or a clean stop
    assert stored(conninfo, TelemetrySink, f"c-{unique}")["telemetry"]


def test_a_failed_background_write_stops_the_flow_and_nothing_after_it_is_written(stack_settings, unique):
    conninfo = stack_settings.postgres.conninfo()
    partition = OverlappedSink(BrokenTelemetrySink(conninfo)).build_part("test_step", "00", None)
    partition.write_batch([telemetry(f"ok-{unique}")])
    partition.write_batch([telemetry(f"broken-{unique}")])
    partition.write_batch([telemetry(f"after-{unique}")])  # may be queued before the failure is seen
    with pytest.raises(RuntimeError, match="a batch the database refuses"):
        partition.snapshot()
    partition.close()
    assert stored(conninfo, TelemetrySink, f"ok-{unique}")["telemetry"]
    assert not stored(conninfo, TelemetrySink, f"after-{unique}")["telemetry"]

    flow = Dataflow("broken")
    output("rows", op.input("in", flow, TestingSource([telemetry(f"ok2-{unique}"), telemetry(f"broken-{unique}")])),
           OverlappedSink(BrokenTelemetrySink(conninfo)))  # fmt: skip
    with pytest.raises(Exception) as stopped:  # Bytewax's error, caused by the write's
        run_main(flow)
    assert "a batch the database refuses" in "".join(traceback.format_exception(stopped.value))


def test_a_flow_writes_everything_before_it_ends(stack_settings, unique):
    conninfo = stack_settings.postgres.conninfo()
    twins = [f"flow{i}-{unique}" for i in range(5)]
    batches = [telemetry(twin) for twin in twins] * 3  # lists, as the flows emit them; twice again
    flow = Dataflow("overlapped")
    output(
        "rows",
        op.input("in", flow, TestingSource(batches, batch_size=2)),
        OverlappedSink(SlowTelemetrySink(conninfo), 2),
    )
    run_main(flow)
    for twin in twins:
        assert stored(conninfo, TelemetrySink, twin) == stored(conninfo, TelemetrySink, twins[0]) != {"telemetry": []}


def test_telemetry_copies_new_batches_and_stages_stored_or_repeated_rows(stack_settings, unique, caplog):
    """New readings take one COPY into the table; a batch with stored rows (written twice, overlapping
    the last one) or a row repeated inside makes the COPY hit the primary key, and the writer falls
    back to staging until a batch is all new again. Every delivery leaves one copy of each row."""
    twin = f"copy-{unique}"
    caplog.set_level(logging.INFO, logger="connectors.postgres.telemetry_sink")

    def rows(start: int, stop: int) -> list[TelemetryRow | TypedRow]:
        plain = [TelemetryRow(twin, "a", T0 + timedelta(seconds=i), float(i), i, 0, "test") for i in range(start, stop)]
        return [*plain, TypedRow(twin, "on", T0 + timedelta(seconds=start), 1.0, start, 0, "test", 1, None, None)]

    def staging_switches() -> list[str]:
        switched = [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records if r.name.endswith("telemetry_sink")]
        caplog.clear()
        return switched

    writer = TelemetrySink(stack_settings.postgres.conninfo()).open()
    assert writer.write(rows(0, 10)) == 11
    assert writer.write(rows(10, 20)) == 11
    assert staging_switches() == []  # new batches: COPY
    assert writer.write(rows(10, 20)) == 0  # written twice
    assert writer.write(rows(0, 10)) == 0
    assert staging_switches() == ["staging"]  # one failed COPY, then staged
    assert writer.write(rows(20, 30)) == 11
    assert writer.write(rows(30, 40)) == 11
    assert staging_switches() == ["back to COPY"]
    repeated = rows(40, 50)
    assert writer.write([*repeated, repeated[3], repeated[-1]]) == 11  # repeats inside the batch
    assert writer.write(rows(45, 55)) == 6  # overlaps the last batch: 5 of its readings are stored
    assert writer.write(rows(55, 60)) == 6
    assert staging_switches() == ["staging", "back to COPY"]
    writer.close()

    with psycopg.connect(stack_settings.postgres.conninfo()) as db:
        stored_rows = db.execute(
            "SELECT sensor, seq, count(*) FROM telemetry WHERE twin_id = %s GROUP BY 1, 2 ORDER BY 1, 2", (twin,)
        ).fetchall()
    plain = [("a", i, 1) for i in range(60)]
    typed = [("on", start, 1) for start in (0, 10, 20, 30, 40, 45, 55)]
    assert stored_rows == sorted(plain + typed)


def test_the_ingest_role_of_the_least_privilege_grants_writes_new_and_stored_telemetry(stack_settings, unique):
    """The flow's PostgreSQL role in the secure profile may only insert telemetry (and read its key
    columns, for ON CONFLICT): migration 0021's grant, given here to a role of this test. Its sink
    opens (the staging table is made without reading the table), copies new rows and stages stored
    ones; plain rows staged keep the table's default value type."""
    role = f"tf_ingest_{unique}".replace("-", "_")
    migration = (MIGRATIONS / "0021_least_privilege.sql").read_text()
    grant = re.search(r"GRANT [^;]+ ON telemetry TO twinflow_ingest", migration)
    assert grant is not None
    admin = superuser_conninfo(stack_settings, stack_settings.postgres.dbname)
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'ingest-test'").format(sql.Identifier(role)))
        db.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        db.execute(grant.group(0).replace("twinflow_ingest", role))
    twin = f"grant-{unique}"
    plain = [TelemetryRow(twin, "a", T0 + timedelta(seconds=i), float(i), i, 0, "test") for i in range(10)]
    try:
        writer = TelemetrySink(stack_settings.postgres.conninfo(user=role, password="ingest-test")).open()
        try:
            assert writer.write(plain[:5]) == 5  # COPY
            assert writer.write(plain) == 5  # half stored: staged
        finally:
            writer.close()
        with psycopg.connect(admin) as db:
            stored_rows = db.execute(
                "SELECT seq, value_type FROM telemetry WHERE twin_id = %s ORDER BY seq", (twin,)
            ).fetchall()
        assert stored_rows == [(i, 0) for i in range(10)]
    finally:
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_model_outputs_copy_new_rows_and_upsert_stored_ones(stack_settings, unique, caplog):
    """Scores, forecasts and failure predictions take one COPY per table while they are new; a batch
    with stored rows (a replay, here with other values, or a row repeated inside the batch) falls back
    to staging and upserts: the last value written wins, one row per identity, and the writer goes
    back to COPY once a batch is all new again."""
    twin = f"mo-{unique}"
    caplog.set_level(logging.INFO, logger="connectors.postgres.copy_insert")

    def outputs(start: int, stop: int, score: float) -> list:
        ts = [T0 + timedelta(seconds=i) for i in range(start, stop)]
        return [
            *(AnomalyScore(twin, t, score, 0.5, score > 0.5, {"x": 1.0}, "test") for t in ts),
            *(ForecastPoint(twin, "x", t, t + timedelta(minutes=1), score) for t in ts),
            FailurePrediction(twin, ts[0], 3600.0 * score, 0.1),
        ]

    def switches() -> list[str]:
        switched = [r.getMessage() for r in caplog.records if r.name.endswith("copy_insert")]
        caplog.clear()
        return switched

    writer = ModelOutputSink(stack_settings.postgres.conninfo()).open()
    assert writer.write(outputs(0, 10, 0.2)) == 21
    assert switches() == []  # new rows: COPY
    assert writer.write(outputs(5, 15, 0.9)) == 21  # 5 scores and 5 forecasts stored: updated
    assert switches() == [
        "anomaly_scores batch held 5 stored or repeated rows: staging",
        "forecasts batch held 5 stored or repeated rows: staging",
    ]
    again = outputs(20, 25, 0.3)
    assert writer.write([*again, again[0]]) == 11  # a repeat inside the batch: one row, all new
    assert switches() == [
        "anomaly_scores batch of 5 rows all new: back to COPY",
        "forecasts batch of 5 rows all new: back to COPY",
    ]
    assert writer.write([*outputs(30, 32, 0.4), outputs(30, 32, 0.4)[0]]) == 5  # repeated while copying
    assert switches() == []  # staged once (the COPY hit the repeat), all new after it: no switch
    writer.close()

    with psycopg.connect(stack_settings.postgres.conninfo()) as db:
        scores = db.execute("SELECT ts, score FROM anomaly_scores WHERE twin_id = %s ORDER BY ts", (twin,)).fetchall()
        rul = db.execute("SELECT ts, rul_s FROM failure_predictions WHERE twin_id = %s ORDER BY ts", (twin,)).fetchall()
        forecasts = db.execute(
            "SELECT count(*), count(DISTINCT ts) FROM forecasts WHERE twin_id = %s", (twin,)
        ).fetchone()
    expected = [(i, 0.2) for i in range(5)] + [(i, 0.9) for i in range(5, 15)] + [(i, 0.3) for i in range(20, 25)]
    expected += [(i, 0.4) for i in range(30, 32)]
    assert scores == [(T0 + timedelta(seconds=i), s) for i, s in expected]
    assert rul == [(T0 + timedelta(seconds=s), 3600.0 * v) for s, v in ((0, 0.2), (5, 0.9), (20, 0.3), (30, 0.4))]
    assert forecasts == (len(expected), len(expected))


def test_twin_windows_of_an_on_off_parameter_are_stored_as_numbers(stack_settings, unique):
    """A window of an on/off parameter aggregates booleans (min, max, last may be True/False): they
    are stored as 1/0 however the batch mixes them with numbers (its columns are sent as arrays)."""
    conninfo = stack_settings.postgres.conninfo()
    twin = f"onoff-{unique}"

    def window(sensor: str, low: float | bool, high: float | bool, last: float | bool) -> WindowRow:
        return WindowRow(twin, sensor, "1m", T0, T0 + timedelta(minutes=1), 2, 0.5, low, high, last, None, 1)

    sink = TwinSink(conninfo)
    session = sink.connect()
    try:
        session.transaction(
            lambda conn: sink.write(conn, [window("a", False, True, True), window("b", 2.5, 3.5, 3.0)]), "test"
        )
    finally:
        sink.disconnect(session)
    with psycopg.connect(conninfo) as db:
        rows = db.execute(
            "SELECT sensor, min, max, last FROM telemetry_windows WHERE twin_id = %s ORDER BY sensor", (twin,)
        ).fetchall()
    assert rows == [("a", 0.0, 1.0, 1.0), ("b", 2.5, 3.5, 3.0)]


def test_a_version_held_from_another_history_of_the_twin_is_not_written_and_is_reported(
    stack_settings, unique, caplog
):
    """A replay writes a version at the same event time (nothing to say); the same version at another
    event time is another writer's history of the twin (e.g. a second deployment on this database)."""
    conninfo, twin = stack_settings.postgres.conninfo(), f"diverged-{unique}"
    first = twin_items(twin)[0]
    other = StateChange(twin, first.version, first.at + timedelta(hours=1), first.published, first.document)
    writer = TwinSink(conninfo).open()
    try:
        writer.write([first])
        with caplog.at_level(logging.WARNING, logger="twinflow.twin_sink"):
            writer.write([first])  # a replay
            assert not caplog.records
            writer.write([other])
    finally:
        writer.close()
    assert stored(conninfo, TwinSink, twin)["twin_state_history"][0][1] == first.at  # the first write stays
    [record] = caplog.records
    assert "1 twin version(s) not written" in record.getMessage() and f"{twin} version 1" in record.getMessage()
