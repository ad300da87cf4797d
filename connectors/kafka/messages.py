"""Conversions between twinflow records and Kafka messages."""

from __future__ import annotations

from bytewax.connectors.kafka import KafkaSinkMessage

from operators.records.alerts import Alert, encode
from operators.telemetry.ingest import DeadLetter


def dead_letter_message(dead: DeadLetter, topic: str) -> KafkaSinkMessage[bytes | None, bytes | None]:
    """The original key and bytes, unchanged, with the rejection described in headers."""
    return KafkaSinkMessage(key=dead.key, value=dead.value, topic=topic, headers=dead.headers())


def alert_message(alert: Alert, topic: str) -> KafkaSinkMessage[bytes, bytes]:
    """An alert version for ``twin.alerts``: key = twin_id, JSON value, ``alert_id`` header."""
    return KafkaSinkMessage(
        key=alert.twin_id.encode(),
        value=encode(alert),
        topic=topic,
        headers=[("alert_id", alert.alert_id.encode())],
    )
