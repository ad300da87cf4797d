"""Kafka and database helpers for the twin integration tests."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg.rows import dict_row

from connectors.kafka.clients import producer_config
from twinflow.settings import Settings


def envelope(twin_id: str, ts: datetime, seq: int, readings: dict[str, float], source: str = "mqtt") -> bytes:
    return json.dumps(
        {
            "v": 1,
            "twin_id": twin_id,
            "ts": ts.isoformat().replace("+00:00", "Z"),
            "seq": seq,
            "source": source,
            "readings": readings,
        }
    ).encode()


def produce(s: Settings, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    p = Producer(producer_config(s))
    for key, value in messages:
        p.produce(topic, key=key, value=value)
        p.poll(0)
    assert p.flush(30) == 0, "Kafka did not acknowledge every test message"


def read_all(s: Settings, topic: str, timeout: float = 30.0, decode: bool = True) -> list[tuple[bytes | None, Any]]:
    """Every (key, JSON-decoded or raw value) in ``topic``, read to the end of all partitions."""
    from tests.kafka_helpers import read_topic

    return [(r.key, json.loads(r.value) if decode and r.value else r.value) for r in read_topic(s, topic, timeout)]


def query(s: Settings, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(s.postgres.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.3):
    """Poll ``check()`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def versions(s: Settings, twin_id: str) -> list[int]:
    return [
        r["version"]
        for r in query(s, "SELECT version FROM twin_state_history WHERE twin_id = %s ORDER BY version", (twin_id,))
    ]


def produce_signed(
    s: Settings,
    twin_id: str,
    values: dict[str, float],
    *,
    mode: str | None = None,
    expect_version: int | None = None,
    reason: str = "",
) -> str:
    """Produce a desired request signed with the local development identity (`twinflow stack up`);
    returns its request id. The flows of the tests use that identity's subjects and dev policy."""
    from twinflow.desired_client import build, signer
    from twinflow.settings import load_settings

    request_id, value = build(
        signer(load_settings()), twin_id, values, mode=mode, expect_version=expect_version, reason=reason
    )
    produce(s, s.twin.desired_topic, [(twin_id.encode(), value)])
    return request_id


def dev_subject() -> str:
    """The subject the local development identity signs as."""
    from twinflow.desired_client import signer
    from twinflow.settings import load_settings

    return signer(load_settings()).subject
