"""Live twin events from Kafka for server-sent events: one consumer, many subscribers.

A background thread reads the twin topics from their current ends (no consumer group, nothing
committed) and turns each record into an :class:`Event` whose SSE frame is encoded once and
shared by every subscriber (each dispatch joins a batch's frames once per set of event types, and every
subscriber of that set queues the same bytes). Event ids are Kafka positions, ``<ts_ms>-<topic>-<partition>-<offset>``,
so a client that reconnects with ``Last-Event-ID`` resumes exactly: from the hub's buffer of recent
events when the id is there, otherwise by reading Kafka again from that time (``replay``) up to where
the live stream took over. Each subscriber's outbox is bounded in bytes (:class:`Subscriber`): a
subscriber too slow to keep up is told so (an ``overflow`` event ends its stream) and resumes the
same way.

Event types: ``state`` (a twin state version), ``alert`` (an alert version of the alerts flow),
``twin_alert`` (reconciliation: desync, command failures), ``desired`` (the gate's verdict on a desired
request: applied or denied),
``score`` (an anomaly score).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

log = logging.getLogger("twinflow.api.events")


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    twin_id: str
    type: str
    ts_ms: int
    part: tuple[int, int]  # (topic index, partition)
    offset: int
    frame: bytes  # the encoded SSE event


@dataclass(frozen=True)
class HubTopics:
    """Topic → event type: every topic carries one record type, so its records are one event type."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]


_EVENT_ID = re.compile(r"(\d{1,19})-(\d{1,4})-(\d{1,9})-(\d{1,19})", re.ASCII)
INT64_MAX = 2**63 - 1


def parse_event_id(text: str) -> tuple[int, int, int, int] | None:
    """``ts-topic-partition-offset`` → numbers; None when it is not one of ours (ASCII digits, each in
    the range Kafka takes).

    >>> parse_event_id("1700000000000-1-3-42"), parse_event_id("x"), parse_event_id("1-0-0-²")
    ((1700000000000, 1, 3, 42), None, None)
    >>> parse_event_id("99999999999999999999-0-0-0")  # beyond a Kafka timestamp
    """
    m = _EVENT_ID.fullmatch(text.strip())
    if m is None:
        return None
    ts, t, p, o = (int(x) for x in m.groups())
    return (ts, t, p, o) if ts <= INT64_MAX and o <= INT64_MAX else None


def _frame(event_id: str, kind: str, data: bytes) -> bytes:
    if b"\n" in data or b"\r" in data:  # every line of a multi-line value needs its own data: field
        data = b"\ndata: ".join(data.splitlines())
    return b"id: " + event_id.encode() + b"\nevent: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def to_event(topics: HubTopics, ti: int, msg: Any) -> Event | None:
    key, value = msg.key(), msg.value()
    if key is None or value is None:
        return None
    try:
        twin_id = key.decode()
    except UnicodeDecodeError:
        return None
    kind = topics.kinds[ti]
    ts_ms = msg.timestamp()[1]
    eid = f"{ts_ms}-{ti}-{msg.partition()}-{msg.offset()}"
    return Event(eid, twin_id, kind, ts_ms, (ti, msg.partition()), msg.offset(), _frame(eid, kind, value))


@dataclass(eq=False)
class Subscriber:
    """One stream's outbox: the frames not yet written, bounded by ``limit_bytes``.

    The hub appends shared chunks (the same bytes object for every subscriber that wants it); the
    stream takes everything queued at once and writes it as one chunk. A subscriber whose outbox
    would pass ``limit_bytes`` overflows: what is queued is dropped, the hub stops feeding it, and its
    stream ends with an ``overflow`` event telling the client to resume with ``Last-Event-ID``.
    """

    twin_id: str | None  # None: every twin
    types: frozenset[str]
    limit_bytes: int = 16 * 2**20
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    overflowed: bool = False
    closed: bool = False
    _waiter: asyncio.Future | None = field(default=None, init=False, repr=False)

    def wants(self, ev: Event) -> bool:
        return ev.type in self.types and (self.twin_id is None or ev.twin_id == self.twin_id)

    def push(self, chunk: bytes) -> None:
        if self.closed:
            return
        if self.pending and self.pending_bytes + len(chunk) > self.limit_bytes:
            self.overflowed = self.closed = True
            self.pending, self.pending_bytes = [], 0
        else:
            self.pending.append(chunk)
            self.pending_bytes += len(chunk)
        self._wake()

    def close(self) -> None:
        """End the stream once what is queued is written (the server stops, the client left)."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self, timeout: float) -> list[bytes] | None:
        """Every queued chunk (write them as one); ``[]`` after ``timeout`` s of nothing (keep-alive);
        None once the stream is over (closed or overflowed: see ``overflowed``)."""
        if not self.pending and not self.closed:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, self._wake)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self.pending:
            out, self.pending, self.pending_bytes = self.pending, [], 0
            return out
        return None if self.closed else []


class EventHub:
    """Start with ``start(loop)``; ``subscribe``/``unsubscribe`` from the event loop."""

    def __init__(
        self,
        consumer_config: dict[str, Any],
        topics: HubTopics,
        buffer_events: int = 50_000,
        client_buffer_bytes: int = 16 * 2**20,
    ) -> None:
        self.config = {
            **consumer_config,
            "group.id": "twinflow-api-hub",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
        self.topics = topics
        self.client_buffer_bytes = client_buffer_bytes
        self.buffer: deque[Event] = deque(maxlen=max(buffer_events, 1))
        self.positions: dict[tuple[int, int], int] = {}  # next offset per (topic, partition) dispatched
        self.by_twin: dict[str, set[Subscriber]] = {}
        self.everyone: set[Subscriber] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state_listeners: list = []  # called with (twin_id, value bytes) for every state record
        self.verdicts: dict[str, asyncio.Future] = {}  # request id → the gate's verdict (PATCH desired)
        self._inbox: list[Event] = []  # consumed, not yet dispatched (filled by the consumer thread)
        self._inbox_lock = threading.Lock()
        self._dispatch_scheduled = False
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._thread = threading.Thread(target=self._run, name="twinflow-event-hub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _assign_at_end(self, consumer: Consumer) -> list[TopicPartition]:
        parts = []
        for ti, name in enumerate(self.topics.names):
            meta = consumer.list_topics(name, timeout=15).topics.get(name)
            if meta is None or meta.error is not None:
                raise RuntimeError(
                    f"topic {name} is missing ({meta.error if meta else 'unknown'}); run twinflow kafka init"
                )
            for p in meta.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=15)
                parts.append(TopicPartition(name, p, high))
                self.positions[(ti, p)] = high
        consumer.assign(parts)
        return parts

    def _run(self) -> None:
        consumer = Consumer(self.config)
        try:
            self._assign_at_end(consumer)
            self.ready.set()
            index = {name: i for i, name in enumerate(self.topics.names)}
            while not self._stop.is_set():
                msgs = consumer.consume(num_messages=1000, timeout=0.05)
                events = []
                for msg in msgs:
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("event hub: %s", msg.error())
                        continue
                    ev = to_event(self.topics, index[msg.topic()], msg)
                    if ev is not None:
                        events.append(ev)
                    else:
                        self.positions[(index[msg.topic()], msg.partition())] = msg.offset() + 1
                if events and self.loop is not None:
                    self._hand_over(events)
        except Exception as exc:  # the server reports it (health) instead of dying silently
            self.error = str(exc)
            log.exception("event hub stopped")
            self.ready.set()
        finally:
            consumer.close()

    def _hand_over(self, events: list[Event]) -> None:
        """From the consumer thread: at most one dispatch waits in the event loop at a time, and it
        takes every event that came meanwhile (one chunk per subscriber per loop turn)."""
        with self._inbox_lock:
            self._inbox.extend(events)
            if self._dispatch_scheduled:
                return
            self._dispatch_scheduled = True
        self.loop.call_soon_threadsafe(self._dispatch_inbox)

    # ------------------------------------------------------------------ fan-out (event loop)
    def _dispatch_inbox(self) -> None:
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
        self._dispatch(events)
        with self._inbox_lock:  # what came during this dispatch goes after the streams it woke have written
            if self._inbox:
                self.loop.call_soon(self._dispatch_inbox)
            else:
                self._dispatch_scheduled = False

    def _dispatch(self, events: list[Event]) -> None:
        self.buffer.extend(events)
        for ev in events:
            self.positions[ev.part] = ev.offset + 1
            if ev.type == "desired" and self.verdicts:
                value = ev.frame[ev.frame.index(b"\ndata: ") + 7 : -2]
                try:
                    verdict = orjson.loads(value)
                    fut = self.verdicts.pop(str(verdict.get("request_id")), None)
                except (orjson.JSONDecodeError, AttributeError):
                    fut = None
                if fut is not None and not fut.done():
                    fut.set_result(verdict)
            if ev.type == "state" and self.state_listeners:
                value = ev.frame[ev.frame.index(b"\ndata: ") + 7 : -2]
                for listener in self.state_listeners:
                    listener(ev.twin_id, value)
        chunks: dict[Subscriber, bytes] = {}
        if self.by_twin:
            per_sub: dict[Subscriber, list[bytes]] = {}
            for ev in events:
                for sub in self.by_twin.get(ev.twin_id, ()):
                    if sub.wants(ev):
                        per_sub.setdefault(sub, []).append(ev.frame)
            chunks = {sub: b"".join(frames) for sub, frames in per_sub.items()}
        # Subscribers of every twin with the same event types get the same bytes, joined once.
        shared: dict[frozenset[str], bytes] = {}
        for sub in self.everyone:
            chunk = shared.get(sub.types)
            if chunk is None:
                chunk = shared[sub.types] = b"".join(ev.frame for ev in events if ev.type in sub.types)
            if chunk:
                chunks[sub] = chunk
        overflowed = []
        for sub, chunk in chunks.items():
            sub.push(chunk)
            if sub.overflowed:
                overflowed.append(sub)
        for sub in overflowed:  # fed no more; its stream tells the client to resume
            log.warning("event stream too slow (outbox over %d bytes): told to resume", sub.limit_bytes)
            self.unsubscribe(sub)

    def close_all(self) -> None:
        """End every stream (the server is stopping)."""
        for sub in [*self.everyone, *(s for subs in self.by_twin.values() for s in subs)]:
            sub.close()

    def subscribe(self, twin_id: str | None, types: Iterable[str]) -> tuple[Subscriber, dict[tuple[int, int], int]]:
        """Register a subscriber; returns it and the positions from which it receives live events."""
        sub = Subscriber(twin_id, frozenset(types), self.client_buffer_bytes)
        (self.everyone if twin_id is None else self.by_twin.setdefault(twin_id, set())).add(sub)
        return sub, dict(self.positions)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub.twin_id is None:
            self.everyone.discard(sub)
        else:
            subs = self.by_twin.get(sub.twin_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.by_twin[sub.twin_id]

    def from_buffer(self, last_id: str, sub: Subscriber) -> list[bytes] | None:
        """Frames after ``last_id`` from the buffer, or None when the id is not there (call ``replay``)."""
        if not self.buffer or last_id not in _ids(self.buffer):
            return None
        out, seen = [], False
        for ev in self.buffer:
            if seen and sub.wants(ev):
                out.append(ev.frame)
            elif ev.id == last_id:
                seen = True
        return out

    def replay(
        self, last_id: str, sub: Subscriber, until: dict[tuple[int, int], int], limit: int = 100_000
    ) -> list[bytes]:
        """Read Kafka again from the time of ``last_id`` up to ``until`` (blocking: run in a thread)."""
        parsed = parse_event_id(last_id)
        if parsed is None:
            return []
        ts_ms, last_t, last_p, last_o = parsed
        consumer = Consumer(self.config)
        try:
            wanted = [TopicPartition(self.topics.names[t], p, ts_ms) for (t, p) in until]
            starts = consumer.offsets_for_times(wanted, timeout=15)
            assign, remaining = [], {}
            for tp in starts:
                t = self.topics.names.index(tp.topic)
                end = until[(t, tp.partition)]
                start = tp.offset if tp.offset >= 0 else end
                if (t, tp.partition) == (last_t, last_p):
                    start = max(start, last_o + 1)
                if start < end:
                    assign.append(TopicPartition(tp.topic, tp.partition, start))
                    remaining[(t, tp.partition)] = end
            if not assign:
                return []
            consumer.assign(assign)
            index = {name: i for i, name in enumerate(self.topics.names)}
            found: list[Event] = []
            while remaining and len(found) < limit:
                msgs = consumer.consume(num_messages=1000, timeout=1.0)
                if not msgs:
                    break
                for msg in msgs:
                    if msg.error():
                        continue
                    key = (index[msg.topic()], msg.partition())
                    end = remaining.get(key)
                    if end is None or msg.offset() >= end:
                        continue
                    if msg.offset() + 1 >= end:
                        remaining.pop(key, None)
                    ev = to_event(self.topics, key[0], msg)
                    if ev is not None and ev.ts_ms >= ts_ms and ev.id != last_id and sub.wants(ev):
                        found.append(ev)
            found.sort(key=lambda e: (e.ts_ms, e.part, e.offset))
            return [e.frame for e in found]
        finally:
            consumer.close()


def _ids(events: Iterable[Event]) -> set[str]:
    return {e.id for e in events}
