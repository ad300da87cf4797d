"""Booleans, readings without a value and status names through the real telemetry flow into
PostgreSQL; a bad value is dead-lettered alone, naming its field, with the original bytes and headers."""

from __future__ import annotations

import orjson
import psycopg
import pytest

from tests.dlq_helpers import envelope
from tests.kafka_helpers import produce, read_topic, run_flow_to_end

pytestmark = pytest.mark.integration


def test_typed_values_are_stored_and_a_bad_value_alone_is_dead_lettered(settings, unique) -> None:
    twin = f"typed-{unique}"
    k = twin.encode()
    mixed = envelope(twin, 1, readings={"flow": 12.5, "running": True, "stopped": False})
    failed = envelope(twin, 2, readings={"temp_c": None, "rpm": 1450.0}, status={"temp_c": "BadSensorFailure"})
    partly_bad = envelope(twin, 3, readings={"temperature": 30.8, "running": True, "mode": "auto"})
    origin = [("mqtt.topic", b"plant/line1/" + k), ("bridge", b"mqtt")]
    messages = [(k, orjson.dumps(mixed)), (k, orjson.dumps(failed)), (k, orjson.dumps(partly_bad), origin)]
    produce(settings, messages)

    run_flow_to_end(settings)

    with psycopg.connect(settings.postgres.conninfo()) as db:
        rows = db.execute(
            "SELECT seq, sensor, value, value_type, quality, status FROM telemetry WHERE twin_id = %s "
            "ORDER BY seq, sensor",
            (twin,),
        ).fetchall()
        types = dict(db.execute("SELECT value_type, name FROM telemetry_value_types").fetchall())
    assert rows == [
        (1, "flow", 12.5, 0, 0, None),
        (1, "running", 1.0, 1, 0, None),
        (1, "stopped", 0.0, 1, 0, None),
        (2, "rpm", 1450.0, 0, 0, None),
        (2, "temp_c", None, 0, 2, "BadSensorFailure"),
        (3, "running", 1.0, 1, 0, None),
        (3, "temperature", 30.8, 0, 0, None),
    ]
    assert types == {0: "number", 1: "boolean", 2: "text"}
    (dead,) = read_topic(settings, settings.topics.dlq)
    assert dead.value == orjson.dumps(partly_bad) and dead.key == k
    assert dead.headers["dlq.reason"] == b"schema"
    assert dead.headers["dlq.field"] == b"readings.mode"
    assert dead.headers["dlq.detail"] == b"readings.mode: str 'auto' is not a number, a boolean or null"
    assert dead.headers["mqtt.topic"] == b"plant/line1/" + k and dead.headers["bridge"] == b"mqtt"
