"""The flows' Kafka sink never loses a record silently: a record Kafka did not acknowledge raises at
the latest when its partition settles (the epoch's end, before Bytewax can commit it); the twin flow's
history is written only after Kafka acknowledged the records made with it (FencedPartition)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message

from connectors.batch_sink import BatchSink, BatchWriter
from connectors.kafka.sink import DeliveryReports, MessageSink, OutMessage, UndeliveredError
from connectors.kafka.stall import StallWatch
from connectors.overlap import FencedPartition, OverlappedSink


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


class _Producer:
    """librdkafka's surface as the sink uses it; acknowledges what it holds at each poll/flush unless
    ``wedged`` (a stalled librdkafka: it holds records and never acknowledges them until purged)."""

    def __init__(self, config, wedged: bool) -> None:
        self.report, self.wedged = config["on_delivery"], wedged
        self.held: list[Message] = []
        self.reports: list[tuple[Any, Message]] = []  # served at the next poll
        self.acked: list[bytes] = []

    def produce(self, topic, value, key, headers=None):
        self.held.append(Message(topic=topic, key=key, value=value, headers=headers))

    def poll(self, timeout=0):
        if self.wedged and not self.reports:
            time.sleep(min(timeout, 0.02))
        reports, self.reports = self.reports, []
        for err, msg in reports:
            self.report(err, msg)
        if not self.wedged:
            self.acked += [m.value() for m in self.held]
            self.held = []
        return len(reports)

    def flush(self, timeout=None):
        self.poll(min(timeout or 0, 0.02))
        return len(self)

    def purge(self):
        self.reports += [(KafkaError(KafkaError._PURGE_INFLIGHT), m) for m in self.held]
        self.held = []

    def __len__(self):
        return len(self.held) + len(self.reports)


def _reports(answers: threading.Event) -> tuple[DeliveryReports, list[_Producer]]:
    made: list[_Producer] = []

    def make(config):
        made.append(_Producer(config, wedged=not made))  # the first one stalls
        return made[-1]

    watch = StallWatch(0.3, lambda topics: answers.is_set() and topics == {"twin.state"})
    return DeliveryReports({}, watch, make=make), made


def test_a_stalled_producer_is_replaced_once_kafka_answers_and_its_records_are_sent_again() -> None:
    """The flow keeps going instead of waiting message.timeout.ms (300 s) for the stall to fail it."""
    answers = threading.Event()
    answers.set()
    reports, made = _reports(answers)
    records = [OutMessage(f"pump-{i}".encode(), str(i).encode(), "twin.state", [("h", b"1")] if i % 2 else None)
               for i in range(10)]  # fmt: skip
    reports.produce(records)
    settle = threading.Thread(target=reports.flush, daemon=True)  # the epoch's settle
    settle.start()
    settle.join(10)
    assert not settle.is_alive(), "the settle waits on the stalled producer"
    assert len(made) == 2 and reports.restarts == 1
    assert made[1].acked == [str(i).encode() for i in range(10)]  # every record, in order
    assert made[0].acked == []


def test_an_outage_is_not_a_stall_the_producer_is_kept() -> None:
    """Kafka not answering: waiting is right (librdkafka retries); nothing is purged."""
    reports, made = _reports(threading.Event())
    reports.produce([OutMessage(b"pump-1", b"1", "twin.state")])
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        reports.watch()
        time.sleep(0.02)
    assert len(made) == 1 and reports.restarts == 0 and len(made[0].held) == 1


class _Rows(BatchSink[str, list[str]]):
    """A destination that keeps what it is given (PostgreSQL's place in the twin flow): the thing under
    test is the order between the two sinks, not the database."""

    def __init__(self, acked: Callable[[], list[bytes]]) -> None:
        super().__init__()
        self.acked_when_written: list[tuple[str, list[bytes]]] = []
        self._acked = acked

    def connect(self) -> list[str]:
        return []

    def write_to(self, destination: list[str], batch: Sequence[str]) -> int:
        destination.extend(batch)
        self.acked_when_written += [(row, list(self._acked())) for row in batch]
        return len(batch)

    def route_key(self, record: str) -> bytes:
        return record.encode()


def _fenced(answers: threading.Event) -> tuple[FencedPartition, list[_Producer], _Rows]:
    reports, made = _reports(answers)
    rows = _Rows(lambda: [v for p in made for v in p.acked])
    return FencedPartition(BatchWriter(MessageSink({}), reports), rows.open()), made, rows


def test_a_twin_version_is_stored_only_after_kafka_acknowledged_its_records() -> None:
    """Outputs before state: the history row waits for its command's acknowledgement."""
    part, made, rows = _fenced(threading.Event())  # Kafka not answering: no replacement, just waiting
    part.write_batch([([OutMessage(b"pump-1", b"command", "twin.commands")], ["pump-1 v2"])])
    time.sleep(0.5)
    assert rows.acked_when_written == [], "stored before its command was acknowledged"
    made[0].wedged = False  # Kafka acknowledges
    part.snapshot()
    assert rows.acked_when_written == [("pump-1 v2", [b"command"])]
    part.close()


def test_a_stalled_producer_is_replaced_while_the_flow_waits_on_the_fenced_history() -> None:
    """The flow's thread, blocked behind the history that waits for Kafka, still serves the stall watch:
    the stalled producer is replaced and its records sent again before any history row is written."""
    answers = threading.Event()
    answers.set()
    part, made, rows = _fenced(answers)
    batches = [([OutMessage(b"pump-1", f"m{i}".encode(), "twin.state")], [f"v{i}"]) for i in range(4)]
    writing = threading.Thread(target=lambda: [part.write_batch([b]) for b in batches], daemon=True)
    writing.start()
    writing.join(10)
    assert not writing.is_alive(), "the flow waits on the stalled producer"
    part.snapshot()
    assert len(made) == 2 and made[0].acked == []
    assert made[1].acked == [b"m0", b"m1", b"m2", b"m3"]
    for row, acked in rows.acked_when_written:  # each row after its own message's acknowledgement
        assert f"m{row[1:]}".encode() in acked, (row, acked)
    part.close()
