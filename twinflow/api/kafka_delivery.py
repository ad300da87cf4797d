"""One record to Kafka, acknowledged before the route answers (a desired change, an alert action)."""

from __future__ import annotations

from typing import Any

from twinflow.api.problems import Problem


def deliver(producer: Any, topic: str, key: str, value: bytes, timeout: float, refused: str) -> None:
    """Produce ``value`` keyed by ``key`` and wait up to ``timeout`` seconds for Kafka's acknowledgement;
    else a 503 problem ``kafka-unavailable`` whose detail starts with ``refused``."""
    errors: list[str] = []
    producer.produce(topic, key=key.encode(), value=value, on_delivery=lambda e, _m: e and errors.append(str(e)))
    if producer.flush(timeout) or errors:
        raise Problem(503, "kafka-unavailable", f"{refused}: {errors or 'timeout'}")
