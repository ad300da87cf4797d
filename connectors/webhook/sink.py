"""The alerts flow's webhook sink: POSTs every alert version, signed (:mod:`connectors.webhook.sender`).

A notification, not a store: an alert the receiver did not take after the sender's retries is
logged and skipped, since the alert itself is safe in Kafka and the database.
"""

from __future__ import annotations

import logging

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.webhook.sender import DeliveryFailed, WebhookSender
from operators.records.alerts import Alert, encode

log = logging.getLogger(__name__)


class _WebhookPartition(StatelessSinkPartition[Alert]):
    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender

    def write_batch(self, items: list[Alert]) -> None:
        for alert in items:
            try:
                self._sender.send(encode(alert), f"{alert.alert_id}:{alert.version}")
            except DeliveryFailed as exc:
                log.error("webhook: alert %s v%d not delivered: %s", alert.alert_id, alert.version, exc)

    def close(self) -> None:
        log.info("webhook: %d delivered, %d failed", self._sender.delivered, self._sender.failed)


class WebhookSink(DynamicSink[Alert]):
    """A sender per worker (``attempts`` tries with backoff, ``timeout_s`` per request)."""

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 5.0, attempts: int = 5) -> None:
        self._args = (url, secret)
        self._kw = {"timeout_s": timeout_s, "attempts": attempts}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WebhookPartition:
        return _WebhookPartition(WebhookSender(*self._args, **self._kw))
