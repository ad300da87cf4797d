"""Webhook POSTs against a real local HTTP receiver: signature, idempotency key, what is retried
later and what is refused. The outbox that retries (and the alerts flow around it) is tested in
tests/integration/test_webhook_outbox.py."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest

from connectors.webhook.sender import (
    DELIVERY_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Refused,
    Transient,
    WebhookSender,
    verify,
)
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration
SECRET = b"s3cret-for-tests"


def test_signed_post_is_verifiable_and_tampering_is_detected():
    with Receiver() as rx:
        status = WebhookSender(rx.url, SECRET).post(b'{"alert_id":"al-1","version":1}', "al-1:1")
    assert status == 204
    [req] = rx.requests
    h = req.headers
    assert h["Content-Type"] == "application/json" and h[DELIVERY_HEADER] == h[IDEMPOTENCY_HEADER] == "al-1:1"
    assert verify(SECRET, h[TIMESTAMP_HEADER], req.body, h[SIGNATURE_HEADER])
    assert not verify(SECRET, h[TIMESTAMP_HEADER], req.body + b" ", h[SIGNATURE_HEADER])
    assert not verify(b"wrong", h[TIMESTAMP_HEADER], req.body, h[SIGNATURE_HEADER])
    assert not verify(SECRET, str(int(h[TIMESTAMP_HEADER]) - 3600), req.body, h[SIGNATURE_HEADER])


@pytest.mark.parametrize("status", [429, 500, 503])
def test_server_errors_and_429_are_worth_another_attempt(status):
    with Receiver(fail_first=1, fail_status=status) as rx, pytest.raises(Transient, match=f"HTTP {status}") as err:
        WebhookSender(rx.url, SECRET).post(b"{}", "x:1")
    assert err.value.status == status and rx.attempts == 1


@pytest.mark.parametrize(
    ("status", "header", "wait"),
    [(503, "7", 7.0), (429, "120", 120.0), (503, "Thu, 01 Jan 1970 00:00:00 GMT", 0.0), (503, "soon", None),
     (500, "7", None)],
)
def test_retry_after_of_a_429_or_503_says_how_long_to_wait(status, header, wait):
    """Retry-After (seconds or an HTTP-date) used to be ignored; a 500's is not the receiver's to give."""
    with Receiver(fail_first=1, fail_status=status, retry_after=header) as rx, pytest.raises(Transient) as err:
        WebhookSender(rx.url, SECRET).post(b"{}", "x:1")
    assert err.value.retry_after_s == wait and (f"Retry-After: {header}" in str(err.value)) == (wait is not None)


def test_retry_after_as_an_http_date_is_the_time_until_then():
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    with Receiver(fail_first=1, fail_status=503, retry_after=when) as rx, pytest.raises(Transient) as err:
        WebhookSender(rx.url, SECRET).post(b"{}", "x:1")
    assert 85 <= (err.value.retry_after_s or 0) <= 90


@pytest.mark.parametrize("status", [400, 404, 410])
def test_client_errors_are_refused(status):
    with Receiver(fail_first=1, fail_status=status) as rx, pytest.raises(Refused, match=f"HTTP {status}") as err:
        WebhookSender(rx.url, SECRET).post(b"{}", "x:1")
    assert err.value.status == status and rx.attempts == 1


def test_an_unreachable_receiver_is_worth_another_attempt():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(Transient) as err:
        WebhookSender(f"http://127.0.0.1:{port}/x", SECRET, timeout_s=1).post(b"{}", "x:1")
    assert err.value.status is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_refused_with_where_it_points(status):
    """A 301/302/303 used to be followed as a GET without the body, which the receiver answered
    200: the alert was lost and counted as delivered."""
    with (
        Receiver(fail_first=10, fail_status=status, location="/hooks/moved") as rx,
        pytest.raises(Refused, match=f"HTTP {status} .* redirected to /hooks/moved; .*alerts.webhook_url"),
    ):
        WebhookSender(rx.url, SECRET).post(b'{"alert_id":"al-1"}', "al-1:1")
    assert rx.attempts == 1 and rx.gets == 0


def test_a_receiver_that_does_not_speak_http_is_worth_another_attempt_not_a_crash():
    """A webhook_url pointing at the wrong port (here: a server that answers like SSH) raised
    http.client.BadStatusLine out of the sink, which stopped the alerts flow."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def serve() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        threading.Thread(target=serve, daemon=True).start()
        with pytest.raises(Transient, match="not an HTTP answer"):
            WebhookSender(f"http://127.0.0.1:{srv.getsockname()[1]}/x", SECRET).post(b"{}", "al-9:1")
