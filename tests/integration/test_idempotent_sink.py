"""A batch delivered twice, or a topic replayed, leaves one copy of each row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.postgres.telemetry_sink import TelemetrySink
from operators.telemetry.ingest import TelemetryRow
from tests.kafka_helpers import produce, run_flow_to_end
from tests.twin_kafka import envelope

pytestmark = pytest.mark.integration


def count(settings, twin: str) -> tuple[int, int]:
    with psycopg.connect(settings.postgres.conninfo()) as db:
        return db.execute(
            "SELECT count(*), count(DISTINCT (sensor, ts)) FROM telemetry WHERE twin_id = %s", (twin,)
        ).fetchone()


def test_same_batch_twice_leaves_one_copy(stack_settings, unique):
    twin = f"idem-{unique}"
    t0 = datetime.now(UTC).replace(microsecond=0)
    rows = [
        TelemetryRow(twin, sensor, t0 + timedelta(seconds=i), float(i), i, 0, "test")
        for i in range(500)
        for sensor in ("a", "b")
    ]
    writer = TelemetrySink(stack_settings.postgres.conninfo()).open()
    assert writer.write(rows) == 1000
    assert writer.write(rows) == 0
    assert writer.write(rows[:10] + rows[:10]) == 0  # duplicates inside one batch too
    writer.close()
    assert count(stack_settings, twin) == (1000, 1000)


def test_replaying_the_topic_writes_nothing_twice(settings, unique):
    twin = f"replay-{unique}"
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    produce(
        settings,
        [
            (twin.encode(), envelope(twin, t0 + timedelta(seconds=i), i, {"x": i, "y": -i}, source="test"))
            for i in range(300)
        ],
    )
    run_flow_to_end(settings)
    assert count(settings, twin) == (600, 600)
    run_flow_to_end(settings)  # no recovery state: reads the topic again from the start
    assert count(settings, twin) == (600, 600)


def test_writer_reconnects_after_its_connection_is_killed(stack_settings, unique):
    twin = f"reconn-{unique}"
    t0 = datetime.now(UTC)
    writer = TelemetrySink(stack_settings.postgres.conninfo()).open()
    writer.write([TelemetryRow(twin, "a", t0, 1.0, 1, 0, "test")])
    pid = writer.destination.conn.info.backend_pid
    with psycopg.connect(
        stack_settings.postgres.conninfo(
            user="postgres", password=stack_settings.stack.postgres_superuser_password.get_secret_value()
        ),
        autocommit=True,
    ) as su:
        su.execute("SELECT pg_terminate_backend(%s)", (pid,))
    writer.write([TelemetryRow(twin, "a", t0 + timedelta(seconds=1), 2.0, 2, 0, "test")])
    writer.close()
    assert count(stack_settings, twin) == (2, 2)
