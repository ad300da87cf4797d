"""Conversions between twinflow records and Kafka messages."""

from __future__ import annotations

from typing import Any

from bytewax.connectors.kafka import KafkaSinkMessage

from operators.records.alerts import Alert, encode
from operators.telemetry.ingest import DeadLetter

STORED = "twinflow-stored"
"""The header of a model output whose database row the flow that made it writes (the pipeline flow,
in the same pass as the reading's telemetry row): the alerts flow stores only outputs without it
(those of the models flow, or of a model of your own publishing to the same topics)."""
STORED_HEADERS = [(STORED, b"postgres")]


def stored(message: Any) -> bool:
    """Whether a consumed message carries :data:`STORED`.

    >>> from bytewax.connectors.kafka import KafkaSourceMessage
    >>> stored(KafkaSourceMessage(b"p1", b"{}", headers=STORED_HEADERS)), stored(KafkaSourceMessage(b"p1", b"{}"))
    (True, False)
    """
    headers = message.headers
    return bool(headers) and any(name == STORED for name, _ in headers)


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
