"""Conversions between twinflow records and Kafka messages."""

from __future__ import annotations

from bytewax.connectors.kafka import KafkaSinkMessage

from operators.telemetry.ingest import DeadLetter


def dead_letter_message(dead: DeadLetter, topic: str) -> KafkaSinkMessage[bytes | None, bytes | None]:
    """The original key and bytes, unchanged, with the rejection described in headers."""
    return KafkaSinkMessage(key=dead.key, value=dead.value, topic=topic, headers=dead.headers())
