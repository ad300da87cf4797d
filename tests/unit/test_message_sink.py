"""The flows' Kafka sink never loses a record silently: a record Kafka did not acknowledge raises at
the latest when its partition settles (the epoch's end, before Bytewax can commit it)."""

from __future__ import annotations

import socket
import time

import pytest

from connectors.kafka.sink import MessageSink, OutMessage, UndeliveredError
from connectors.overlap import OverlappedSink


def _closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = {
    "bootstrap.servers": f"127.0.0.1:{_closed_port()}",  # a real connection attempt that is refused
    "enable.idempotence": True,
    "acks": "all",
    "message.timeout.ms": 1500,
    "log_level": 0,
}


def test_records_kafka_never_acknowledged_raise_at_the_epochs_end_instead_of_vanishing() -> None:
    part = OverlappedSink(MessageSink(CONFIG), background=False).build_part("out", "00", None)
    records = [OutMessage(b"pump-1", b"{}", "twin.state"), OutMessage(b"pump-2", b"{}", "twin.state", [("h", b"1")])]
    part.write_batch([records])  # produced, not waited for
    with pytest.raises(UndeliveredError, match=r"did not acknowledge 2 record\(s\).*twin.state"):
        part.snapshot()  # Bytewax commits the epoch only after this
    part.close()  # nothing left over: the failure was reported once


def test_a_failure_already_reported_stops_the_next_write() -> None:
    part = OverlappedSink(MessageSink(CONFIG), background=False).build_part("out", "00", None)
    with pytest.raises(UndeliveredError, match=r"did not acknowledge \d+ record"):
        for i in range(100):  # the first report arrives after message.timeout.ms (1.5 s)
            part.write_batch([[OutMessage(f"pump-{i}".encode(), b"{}", "twin.state")]])
            time.sleep(0.05)
    with pytest.raises(UndeliveredError):  # the records produced after it fail too: nothing vanishes
        part.close()


def test_without_the_epochs_end_the_sink_is_refused() -> None:
    with pytest.raises(TypeError, match="OverlappedSink"):
        MessageSink(CONFIG).build("out", 0, 1)
