"""Bytewax sinks of the alerts flow: database (alerts, model outputs) and webhook.

Kafka output uses Bytewax's KafkaSink with :func:`alert_message`.
"""

from __future__ import annotations

import logging

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.postgres.alerts_store import AlertStore
from connectors.webhook.sender import DeliveryFailed, WebhookSender
from operators.records.alerts import ORIGIN, Alert, AnomalyScore, FailurePrediction, ForecastPoint, encode

log = logging.getLogger(__name__)

ModelOutput = AnomalyScore | FailurePrediction | ForecastPoint


def alert_message(alert: Alert, topic: str) -> KafkaSinkMessage[bytes, bytes]:
    """An alert version for ``twin.alerts``: key = twin_id, JSON value, origin header."""
    return KafkaSinkMessage(
        key=alert.twin_id.encode(),
        value=encode(alert),
        topic=topic,
        headers=[("origin", ORIGIN.encode()), ("alert_id", alert.alert_id.encode())],
    )


class _AlertDbPartition(StatelessSinkPartition[Alert]):
    def __init__(self, conninfo: str) -> None:
        self._store = AlertStore(conninfo)

    def write_batch(self, items: list[Alert]) -> None:
        self._store.write_alerts(items)

    def close(self) -> None:
        self._store.close()


class AlertDbSink(DynamicSink[Alert]):
    """Upserts alert versions into ``alerts`` and ``alert_events``."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertDbPartition:
        return _AlertDbPartition(self._conninfo)


class _OutputsPartition(StatelessSinkPartition[ModelOutput]):
    def __init__(self, conninfo: str) -> None:
        self._store = AlertStore(conninfo)

    def write_batch(self, items: list[ModelOutput]) -> None:
        self._store.write_model_outputs(items)

    def close(self) -> None:
        self._store.close()


class ModelOutputSink(DynamicSink[ModelOutput]):
    """Upserts anomaly scores, forecasts and failure predictions."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _OutputsPartition:
        return _OutputsPartition(self._conninfo)


class _WebhookPartition(StatelessSinkPartition[Alert]):
    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender

    def write_batch(self, items: list[Alert]) -> None:
        for alert in items:
            try:
                self._sender.send(encode(alert), f"{alert.alert_id}:{alert.version}")
            except DeliveryFailed as exc:
                # The alert itself is safe in Kafka and the database; the webhook is a notification.
                log.error("webhook: alert %s v%d not delivered: %s", alert.alert_id, alert.version, exc)

    def close(self) -> None:
        log.info("webhook: %d delivered, %d failed", self._sender.delivered, self._sender.failed)


class WebhookSink(DynamicSink[Alert]):
    """POSTs every alert version, signed (see connectors/webhook/sender.py)."""

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 5.0, attempts: int = 5) -> None:
        self._args = (url, secret)
        self._kw = {"timeout_s": timeout_s, "attempts": attempts}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WebhookPartition:
        return _WebhookPartition(WebhookSender(*self._args, **self._kw))
