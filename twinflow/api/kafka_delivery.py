"""One record to Kafka, acknowledged before the route answers (a desired change, an alert action)."""

from __future__ import annotations

from typing import Any

from connectors.kafka.clients import produce_acknowledged
from twinflow.api.problems import Problem


def deliver(producer: Any, topic: str, key: str, value: bytes, timeout: float, refused: str) -> None:
    """Produce ``value`` keyed by ``key`` and wait up to ``timeout`` seconds for Kafka's acknowledgement;
    else a 503 problem ``kafka-unavailable`` whose detail starts with ``refused``."""
    failure = produce_acknowledged(producer, topic, key, value, timeout)
    if failure is not None:
        raise Problem(503, "kafka-unavailable", f"{refused}: {failure}")
