"""Webhook delivery against a real local HTTP receiver: signature, retries, refusals."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import orjson
import pytest

from connectors.webhook.sender import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryFailed,
    WebhookSender,
    verify,
)
from connectors.webhook.sink import WebhookSink
from operators.records.alerts import Alert
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration
SECRET = b"s3cret-for-tests"


def test_signed_post_is_verifiable_and_tampering_is_detected():
    with Receiver() as rx:
        status = WebhookSender(rx.url, SECRET).send(b'{"alert_id":"al-1","version":1}', "al-1:1")
    assert status == 204
    [req] = rx.requests
    h = req.headers
    assert h["Content-Type"] == "application/json" and h[DELIVERY_HEADER] == "al-1:1"
    assert verify(SECRET, h[TIMESTAMP_HEADER], req.body, h[SIGNATURE_HEADER])
    assert not verify(SECRET, h[TIMESTAMP_HEADER], req.body + b" ", h[SIGNATURE_HEADER])
    assert not verify(b"wrong", h[TIMESTAMP_HEADER], req.body, h[SIGNATURE_HEADER])
    assert not verify(SECRET, str(int(h[TIMESTAMP_HEADER]) - 3600), req.body, h[SIGNATURE_HEADER])


def test_server_errors_are_retried_with_backoff():
    with Receiver(fail_first=2, fail_status=503) as rx:
        sender = WebhookSender(rx.url, SECRET, attempts=4, base_delay=0.01)
        assert sender.send(b"{}", "x:1") == 204
    assert rx.attempts == 3 and len(rx.requests) == 1 and sender.delivered == 1


def test_client_errors_are_not_retried_and_exhaustion_fails():
    with Receiver(fail_first=10, fail_status=400) as rx, pytest.raises(DeliveryFailed, match="HTTP 400"):
        WebhookSender(rx.url, SECRET, attempts=4, base_delay=0.01).send(b"{}", "x:1")
    assert rx.attempts == 1
    with (
        Receiver(fail_first=10, fail_status=500) as rx,
        pytest.raises(DeliveryFailed, match="after 3 attempts"),
    ):
        WebhookSender(rx.url, SECRET, attempts=3, base_delay=0.01).send(b"{}", "x:1")
    assert rx.attempts == 3


def test_unreachable_receiver_is_retried_then_fails():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    sender = WebhookSender(f"http://127.0.0.1:{port}/x", SECRET, attempts=2, base_delay=0.01, timeout_s=1)
    with pytest.raises(DeliveryFailed, match="after 2 attempts"):
        sender.send(b"{}", "x:1")
    assert sender.failed == 1


def test_the_sink_logs_and_skips_a_refused_alert_and_delivers_the_next_in_order(caplog):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    alerts = [Alert(f"al-{i}", "pump-1", "anomaly", "open", "major", 1, "opened", t0, t0) for i in range(3)]
    with Receiver(fail_first=1, fail_status=400) as rx:
        writer = WebhookSink(rx.url, SECRET, attempts=2).build("webhook", 0, 1)  # as Bytewax builds it
        with caplog.at_level("ERROR", logger="connectors.webhook.sink"):
            writer.write_batch([alerts[0], [alerts[1], alerts[2]]])  # records or lists of them
        writer.close()
    assert [orjson.loads(r.body)["alert_id"] for r in rx.requests] == ["al-1", "al-2"]
    assert [r.headers[DELIVERY_HEADER] for r in rx.requests] == ["al-1:1", "al-2:1"]
    assert writer.received == 3 and writer.written == 2
    assert any("alert al-0 v1 not delivered" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_fails_with_where_it_points(status):
    """A 301/302/303 used to be followed as a GET without the body, which the receiver answered
    200: the alert was lost and counted as delivered."""
    with (
        Receiver(fail_first=10, fail_status=status, location="/hooks/moved") as rx,
        pytest.raises(DeliveryFailed, match=f"HTTP {status} .* redirected to /hooks/moved; .*alerts.webhook_url"),
    ):
        WebhookSender(rx.url, SECRET, attempts=3, base_delay=0.01).send(b'{"alert_id":"al-1"}', "al-1:1")
    assert rx.attempts == 1 and rx.gets == 0


def test_a_receiver_that_does_not_speak_http_is_a_failed_delivery_not_a_crash(caplog):
    """A webhook_url pointing at the wrong port (here: a server that answers like SSH) raised
    http.client.BadStatusLine out of the sink, which stopped the alerts flow."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def serve() -> None:
            for _ in range(2):
                conn, _ = srv.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        threading.Thread(target=serve, daemon=True).start()
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        alert = Alert("al-9", "pump-1", "anomaly", "open", "major", 1, "opened", t0, t0)
        writer = WebhookSink(f"http://127.0.0.1:{srv.getsockname()[1]}/x", SECRET, attempts=2).build("webhook", 0, 1)
        with caplog.at_level("ERROR", logger="connectors.webhook.sink"):
            writer.write_batch([alert])
        writer.close()
    assert writer.received == 1 and writer.written == 0
    logged = [r.getMessage() for r in caplog.records]
    assert any("al-9 v1 not delivered" in m and "not an HTTP answer" in m for m in logged), logged
