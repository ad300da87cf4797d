"""A webhook's errors are stored in the outbox and shown by the API and the web view: they name the
receiver without the credentials or token its URL may carry."""

from __future__ import annotations

import socket

import pytest

from connectors.webhook.sender import Transient, WebhookSender


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_error_names_the_receiver_without_its_secrets() -> None:
    port = _closed_port()
    sender = WebhookSender(f"http://bot:pa55word@127.0.0.1:{port}/hooks/in?token=s3cret", b"k", timeout_s=2)
    with pytest.raises(Transient) as failed:
        sender.post(b"{}", "a-1:1")
    message = str(failed.value)
    assert f"http://127.0.0.1:{port}/hooks/in?…" in message
    assert "pa55word" not in message and "s3cret" not in message and "bot" not in message
