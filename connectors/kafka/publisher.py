"""The one way bridges hand records to Kafka: a bounded local buffer with back-pressure.

``put()`` never loses a record silently. Records go to a :class:`SpillQueue` (memory, then a
spill file); a background thread moves them into the idempotent producer while fewer than
``max_in_flight`` are unacknowledged. When Kafka is down, deliveries stall, the in-flight window
fills and the buffer grows; failed deliveries go back to the head of the buffer. When memory
and file are full, ``put()`` blocks (back-pressure to the device side) or, with
``when_full = "drop_oldest"``, drops the oldest record and counts it.

A producer that stalls — Kafka answers metadata requests but acknowledges none of the records in
flight for ``stall_s`` (librdkafka can wedge like this after a broker restart;
:mod:`connectors.kafka.stall`) — is replaced: its records are purged back into the buffer and a new
producer sends them (``restarts`` counts this).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer

from connectors.config.contract import ConnectorSettings
from connectors.kafka.clients import make_producer
from connectors.kafka.spill import Full, Record, SpillQueue
from connectors.kafka.stall import PURGED, KafkaProbe, StallWatch

log = logging.getLogger(__name__)

# Delivery errors after which the record goes back into the buffer.
_REQUEUE = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._PURGE_QUEUE,
    KafkaError._PURGE_INFLIGHT,
    KafkaError._TIMED_OUT,
}


@dataclass
class PublisherCounters:
    put: int = 0
    delivered: int = 0
    # Deliveries that failed and were put back into the buffer (retried).
    retried: int = 0
    # Records written to the spill file (total), and dropped because everything was full.
    spilled: int = 0
    dropped: int = 0
    # Records Kafka refused permanently (e.g. too large); logged with the error.
    refused: int = 0
    # Gauges: records waiting in the local buffer, and handed to librdkafka but not yet acknowledged.
    buffered: int = 0
    in_flight: int = 0
    # Times put() had to wait for space (back-pressure).
    blocked: int = 0
    # Stalled producers replaced (Kafka answered, nothing was acknowledged for `stall_s`).
    restarts: int = 0


class Publisher:
    def __init__(
        self,
        settings: ConnectorSettings,
        name: str,
        producer: Producer | None = None,
        spill_path: Path | None = None,
        new_producer: Callable[[], Producer] | None = None,
        kafka_answers: Callable[[Collection[str]], bool] | None = None,
    ) -> None:
        """``producer``/``new_producer``: the producer, and how to make a fresh one after a stall
        (default: from ``settings``; given only ``producer``, it is reused after a purge);
        ``kafka_answers``: whether Kafka answers for the records' topics (default
        :class:`~connectors.kafka.stall.KafkaProbe`)."""
        b = settings.bridge.buffer
        self.settings = settings
        self.name = name
        self.max_in_flight = b.max_in_flight
        self.when_full = b.when_full
        if spill_path is None and b.spill_dir is None:
            raise ValueError("bridge.buffer.spill_dir is not set: name the folder for the buffer's spill files")
        self.queue = SpillQueue(
            spill_path or b.spill_dir / f"{name}.spill",
            memory_records=b.memory_records,
            max_file_bytes=b.spill_max_bytes,
        )
        if new_producer is None:
            new_producer = (lambda: producer) if producer is not None else (lambda: make_producer(settings))
        self._new_producer = new_producer
        self._stall = StallWatch(b.stall_s or settings.kafka.stall_s, kafka_answers or KafkaProbe(settings))
        self._topics: set[str] = set()  # put to (what the stall watch asks Kafka about)
        self.producer = producer or new_producer()
        self.counters = PublisherCounters()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=f"publisher-{name}", daemon=True)
        self._started = False
        self._last_report = time.monotonic()

    # ------------------------------------------------------------------ producer side
    def start(self) -> Publisher:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def put(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one record; blocks while the buffer is full (unless ``when_full = drop_oldest``)."""
        rec: Record = (topic, key, value, headers or [])
        with self._cond:
            self._topics.add(topic)
            while True:
                try:
                    self.queue.put(rec)
                    break
                except Full:
                    if self.when_full == "drop_oldest":
                        if self.queue.drop_oldest() is not None:
                            self.counters.dropped += 1
                            log.error("%s: buffer full, dropped the oldest record", self.name)
                        continue
                    self.counters.blocked += 1
                    self._cond.wait(0.5)
            self.counters.put += 1
            self.counters.spilled = self.queue.spilled_total
            self.counters.buffered = len(self.queue)
            self._cond.notify_all()

    # ------------------------------------------------------------------ drain thread
    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        with self._cond:
            self.counters.in_flight -= 1
            if err is None or err.code() not in PURGED:
                self._stall.progressed()
            if err is None:
                self.counters.delivered += 1
            elif err.retriable() or err.code() in _REQUEUE:
                self.counters.retried += 1
                self.queue.put_front((msg.topic(), msg.key(), msg.value(), list(msg.headers() or [])))
                self.counters.buffered = len(self.queue)
            else:
                self.counters.refused += 1
                log.error("%s: Kafka refused a record for key %r: %s", self.name, msg.key(), err)
            self._cond.notify_all()

    def _drain(self) -> None:
        while not (self._stop.is_set() and not len(self.queue) and self.counters.in_flight == 0):
            moved = 0
            with self._cond:
                while self.counters.in_flight < self.max_in_flight:
                    rec = self.queue.get()
                    if rec is None:
                        break
                    topic, key, value, headers = rec
                    try:
                        self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._delivered)
                    except BufferError:
                        self.queue.put_front(rec)
                        break
                    self.counters.in_flight += 1
                    moved += 1
                self.counters.buffered = len(self.queue)
                if moved:
                    self._cond.notify_all()
            self.producer.poll(0 if moved else 0.05)
            if self._stop.is_set() and self._abandon_at and time.monotonic() > self._abandon_at:
                break
            self._watch_stall()
            self._report()

    _abandon_at: float | None = None

    def _watch_stall(self) -> None:
        """Replace the producer when Kafka has answered for ``stall_s`` while none of the records in
        flight was acknowledged (an outage alone never does: Kafka must answer)."""
        stalled_s = self._stall.stalled_for(self.counters.in_flight > 0, self._topics)
        if stalled_s is not None:
            self._restart_producer(stalled_s)

    def _restart_producer(self, stalled_s: float) -> None:
        """Purge the stalled producer (its records come back through :meth:`_delivered` and are
        requeued) and send them with a new one; if the purge does not return them all, keep it."""
        old = self.producer
        log.warning(
            "%s: Kafka answers but acknowledged none of %d records in %.0f s: replacing the producer",
            self.name, self.counters.in_flight, stalled_s,
        )  # fmt: skip
        old.purge()  # queued and in flight
        deadline = time.monotonic() + 5
        while self.counters.in_flight and time.monotonic() < deadline:
            old.poll(0.1)
        if self.counters.in_flight:
            held = self.counters.in_flight
            log.error("%s: %d records still held by the stalled producer; keeping it", self.name, held)
            self._stall.replaced()
            return
        self.producer = self._new_producer()
        self.counters.restarts += 1
        self._stall.replaced()

    def _report(self) -> None:
        now = time.monotonic()
        backlog = self.counters.buffered > 0 and self.counters.in_flight >= self.max_in_flight
        if now - self._last_report > 10 and (backlog or self.counters.dropped):
            self._last_report = now
            log.warning("%s: Kafka backlog %s", self.name, self.stats())

    # ------------------------------------------------------------------ lifecycle
    @property
    def alive(self) -> bool:
        """False when the drain thread ended although nobody closed the publisher (it crashed)."""
        return not self._started or self._stop.is_set() or self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        with self._cond:
            self.counters.buffered = len(self.queue)
            return asdict(self.counters)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued record is acknowledged by Kafka; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.queue) or self.counters.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is buffered (up to ``timeout``), then stop; leftovers stay in the spill file."""
        self._abandon_at = time.monotonic() + timeout
        self._stop.set()
        if self._started:
            self._thread.join(timeout + 5)
        self.producer.flush(1.0)
        # Undelivered records come back through _delivered (purge errors are requeued) …
        self.producer.purge()
        self.producer.poll(0)
        with self._cond:
            left = len(self.queue)
            if left:
                # … and are kept in the spill file, so the next run sends them.
                self.queue.persist_memory()
                log.error("%s: %d records not delivered at shutdown, kept in %s", self.name, left, self.queue.path)
        self.queue.close()
        log.info("%s: publisher closed %s", self.name, asdict(self.counters))
