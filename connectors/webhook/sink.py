"""The alerts flow's webhook sink: POSTs every alert version, signed (:mod:`connectors.webhook.sender`).

A :class:`~connectors.batch_sink.BatchSink` whose destination is a :class:`WebhookSender` (``attempts``
tries with backoff, ``timeout_s`` per request). A notification, not a store: an alert the receiver
did not take after the sender's retries is logged and skipped, since the alert itself is safe in
Kafka and the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from connectors.batch_sink import BatchSink
from connectors.webhook.sender import DeliveryFailed, WebhookSender
from operators.records.alerts import Alert, encode

log = logging.getLogger(__name__)


class WebhookSink(BatchSink[Alert, WebhookSender]):
    """A sender per worker; alert versions are POSTed one by one, in order."""

    what = "alert versions"
    written_as = "delivered to the webhook (the others are logged as not delivered)"

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 5.0, attempts: int = 5) -> None:
        super().__init__()
        self._args = (url, secret)
        self._kw = {"timeout_s": timeout_s, "attempts": attempts}

    def connect(self) -> WebhookSender:
        return WebhookSender(*self._args, **self._kw)

    def write_to(self, destination: WebhookSender, batch: Sequence[Alert]) -> int:
        delivered = 0
        for alert in batch:
            try:
                destination.send(encode(alert), f"{alert.alert_id}:{alert.version}")
                delivered += 1
            except DeliveryFailed as exc:
                log.error("webhook: alert %s v%d not delivered: %s", alert.alert_id, alert.version, exc)
        return delivered
