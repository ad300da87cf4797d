"""The flows' Kafka sink never loses a record silently: an unacknowledged batch raises."""

from __future__ import annotations

import socket

import pytest

from connectors.kafka.sink import MessageSink, OutMessage, UndeliveredError


def _closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_batch_kafka_never_acknowledged_raises_instead_of_vanishing() -> None:
    config = {
        "bootstrap.servers": f"127.0.0.1:{_closed_port()}",  # a real connection attempt that is refused
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 1500,
        "log_level": 0,
    }
    part = MessageSink(config).build("out", 0, 1)
    records = [OutMessage(b"pump-1", b"{}", "twin.state"), OutMessage(b"pump-2", b"{}", "twin.state", [("h", b"1")])]
    with pytest.raises(UndeliveredError, match=r"did not acknowledge 2 record\(s\).*twin.state"):
        part.write_batch(records)
    part.close()  # nothing left over: the failure was reported once
