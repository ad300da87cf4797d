"""Every PostgreSQL sink keeps the PostgresSink contract on the real database: a batch delivered again
(as Bytewax delivers it: lists of records, repeats inside one batch, split into transactions of
``batch_size``; and replayed in reverse, older versions after newer ones) leaves the rows of one
delivery."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from connectors.postgres.alert_sinks import AlertSink, ModelOutputSink
from connectors.postgres.sink import PostgresSink
from connectors.postgres.telemetry_sink import TelemetrySink
from connectors.postgres.twin_sink import TwinSink
from operators.records.alerts import Alert, AnomalyScore, FailurePrediction, ForecastPoint
from operators.telemetry.ingest import TelemetryRow, TypedRow
from operators.twin.event_windows import WindowRow
from operators.twin.state import StateChange

pytestmark = pytest.mark.integration

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
        return StateChange(twin, version, T0 + timedelta(seconds=version), snapshot, {"cause": "test"})

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
