"""Turn a batch of raw Kafka messages into telemetry rows and dead letters.

Plain Python, no I/O: the flow hands it whatever the Kafka source polled.
Every message ends up either as rows or as exactly one :class:`DeadLetter`;
nothing is dropped.

>>> from types import SimpleNamespace as Msg
>>> ok = Msg(key=b"p1", value=b'{"v":1,"twin_id":"p1","ts":"2026-01-01T00:00:00Z","seq":1,'
...          b'"source":"mqtt","readings":{"rpm":1.0,"temp":2.0}}', topic="t", partition=0, offset=7)
>>> bad = Msg(key=None, value=b"{oops", topic="t", partition=0, offset=8)
>>> out = split_batch([ok, bad], Limits())
>>> [r.sensor for r in out.rows], [d.reason for d in out.dead]
(['rpm', 'temp'], ['bad_json'])

A boolean is stored as 1/0 with ``value_type`` 1, a reading without a value (a Bad status) with
``value`` None and the status name; one bad value is dead-lettered alone (``dlq.field``) and its
siblings stored:

>>> typed = Msg(key=b"p1", value=b'{"v":1,"twin_id":"p1","ts":"2026-01-01T00:00:00Z","seq":2,"source":"opcua",'
...     b'"readings":{"running":true,"temp":null,"mode":"x"},"status":{"temp":"BadSensorFailure"}}',
...     topic="t", partition=0, offset=9, headers=[("bridge", b"opcua")])
>>> out = split_batch([typed], Limits())
>>> [(r.sensor, r.value, r.quality, r.value_type, r.status) for r in out.rows]
[('running', 1.0, 0, 1, None), ('temp', None, 2, 0, 'BadSensorFailure')]
>>> d = out.dead[0]; d.field, d.value == typed.value, d.original_headers
('readings.mode', True, [('bridge', b'opcua')])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from operators.records.envelope import Envelope, Rejected, decode_partial
from operators.telemetry.guard import IngestGuard

QUALITY_CODE = {"good": 0, "uncertain": 1, "bad": 2}
# telemetry.value_type (sql/migrations/0060_typed_readings.sql): what the row holds.
VALUE_NUMBER, VALUE_BOOLEAN, VALUE_TEXT = 0, 1, 2
MAX_DEAD_LETTER_KEY_BYTES = 1024
_new_tuple = tuple.__new__


class RawMessage(Protocol):
    """What the ingest step needs from a Kafka message (Bytewax's KafkaSourceMessage fits)."""

    key: bytes | None
    value: bytes | None
    topic: str | None
    partition: int | None
    offset: int | None
    # Kafka headers (list of (name, bytes)) are read with getattr: not every caller has them.


class TelemetryRow(NamedTuple):
    """One numeric sensor value; identity (twin_id, sensor, ts) makes sink writes idempotent."""

    twin_id: str
    sensor: str
    ts: datetime
    value: float
    seq: int
    quality: int
    source: str


class TypedRow(NamedTuple):
    """A boolean (value 1/0, ``value_type`` 1), a reading without a value (``value`` None), or one
    with a status code name: the columns of :class:`TelemetryRow` and two more (the sink writes
    batches of plain numbers without them, as fast as before)."""

    twin_id: str
    sensor: str
    ts: datetime
    value: float | None
    seq: int
    quality: int
    source: str
    value_type: int
    status: str | None
    text_value: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message, carried unchanged to the dead-letter topic with why and where."""

    value: bytes | None
    key: bytes | None
    reason: str
    detail: str
    topic: str | None
    partition: int | None
    offset: int | None
    rejected_at: datetime
    # Original sizes when the value or key had to be cut to the dead-letter size limits.
    truncated_from: int | None = None
    key_truncated_from: int | None = None
    # The one value rejected (``readings.temp_c``) when the message's other values were kept.
    field: str | None = None
    # The headers the original record carried (``mqtt.topic``, ``bridge`` …), passed on first.
    original_headers: list[tuple[str, bytes]] | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        """The original record's headers, then ``dlq.*`` headers describing the rejection (the value
        stays the original bytes, up to a limit)."""
        cut = [
            (name, str(size).encode())
            for name, size in (
                ("dlq.truncated_from", self.truncated_from),
                ("dlq.key_truncated_from", self.key_truncated_from),
            )
            if size is not None
        ]
        if self.field is not None:
            cut.append(("dlq.field", self.field.encode("utf-8", "replace")))
        return [
            *(self.original_headers or ()),
            ("dlq.reason", self.reason.encode()),
            ("dlq.detail", self.detail[:1024].encode("utf-8", "replace")),
            ("dlq.topic", (self.topic or "").encode()),
            ("dlq.partition", str(self.partition).encode()),
            ("dlq.offset", str(self.offset).encode()),
            ("dlq.rejected_at", self.rejected_at.isoformat().encode()),
            *cut,
        ]


@dataclass(frozen=True, slots=True)
class Limits:
    """Validation limits for the ingest step (see FlowSettings)."""

    max_bytes: int = 64 * 1024
    max_future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=3650)
    # Dead letters carry at most this many bytes of the original value (see DeadLetter.truncated_from).
    max_dead_letter_bytes: int = 512 * 1024


@dataclass(frozen=True, slots=True)
class ReadingRules:
    """The one rule set every flow judges a reading by: the limits and the optional guard (twin
    registry, duplicate seq). Build it once per decoding step from the settings
    (:func:`flows.readings.reading_rules`); the guard remembers what it admitted, so two steps that
    decode the same messages each need their own (or share one :class:`DecodedBatch`).

    >>> from types import SimpleNamespace as Msg
    >>> m = Msg(key=b"p1", value=b'{"v":1,"twin_id":"p1","ts":"2026-01-01T00:00:00Z","seq":1,'
    ...         b'"source":"mqtt","readings":{"rpm":1.0}}', topic="t", partition=0, offset=7)
    >>> rules = ReadingRules(Limits(), IngestGuard())
    >>> len(rules.split([m]).envelopes), rules.split([m]).absorbed  # a redelivery is absorbed
    (1, 1)
    """

    limits: Limits = field(default_factory=Limits)
    guard: IngestGuard | None = None

    def split(self, messages: list[RawMessage], now: datetime | None = None, *, rows: bool = True) -> Split:
        """:func:`split_batch` under these rules."""
        return split_batch(messages, self.limits, now, self.guard, rows=rows)

    def decode(self, messages: list[RawMessage], now: datetime | None = None) -> DecodedBatch:
        """Judge ``messages`` once (see :class:`DecodedBatch`)."""
        return DecodedBatch(messages, self, now)


@dataclass(slots=True)
class Split:
    """One polled batch, decoded: rows for the database, envelopes for per-twin operators."""

    rows: list[TelemetryRow | TypedRow] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    # Identical redeliveries of an already received (twin_id, seq), absorbed by the guard.
    absorbed: int = 0


def split_batch(
    messages: list[RawMessage],
    limits: Limits,
    now: datetime | None = None,
    guard: IngestGuard | None = None,
    *,
    rows: bool = True,
) -> Split:
    """Decode a batch; valid envelopes become rows, the rest dead letters.

    ``guard`` (optional) adds the unknown-twin and duplicate-seq checks (:mod:`operators.telemetry.guard`).
    ``rows=False`` keeps only the envelopes (for consumers that do not write telemetry rows).
    """
    now = now or datetime.now(UTC)
    out = Split()
    for msg in messages:
        _add(out, judge(msg, limits, now, guard), rows)
    return out


# A judged message: the envelope to keep (None: rejected or absorbed) and its dead letters.
Judged = tuple[Envelope | None, list[DeadLetter]]


def judge(msg: RawMessage, limits: Limits, now: datetime, guard: IngestGuard | None) -> Judged:
    """Decode and validate one message; a message with neither envelope nor dead letter was absorbed
    by the guard (an identical redelivery)."""
    try:
        env, bad = decode_partial(
            msg.value,
            key=msg.key,
            now=now,
            max_bytes=limits.max_bytes,
            max_future_skew=limits.max_future_skew,
            max_age=limits.max_age,
        )
        if guard is not None and not guard.admit(env):
            return None, []
    except Rejected as exc:
        return None, [dead_letter(msg, exc.reason.value, exc.detail, limits, now, exc.field)]
    return env, [dead_letter(msg, b.reason.value, b.detail, limits, now, b.field) for b in bad] if bad else _NO_DEAD


_NO_DEAD: list[DeadLetter] = []  # shared by the judged messages without dead letters: never appended to


def _add(out: Split, judged: Judged, rows: bool) -> None:
    """Append one judged message to ``out`` (its rows only when ``rows``)."""
    env, dead = judged
    if dead:
        out.dead.extend(dead)
    if env is None:
        if not dead:
            out.absorbed += 1
        return
    out.envelopes.append(env)
    if not rows:
        return
    out_rows = out.rows
    quality = QUALITY_CODE[env.quality]
    status = env.status
    twin_id, ts, seq, source = env.twin_id, env.ts, env.seq, env.source
    readings = env.readings
    if status is None and not env.text:  # the usual message: plain numbers only, in one comprehension
        # tuple.__new__: the same TelemetryRow without the NamedTuple's Python-level __new__
        plain = [
            _new_tuple(TelemetryRow, (twin_id, sensor, ts, value, seq, quality, source))
            for sensor, value in readings.items()
            if value.__class__ is float
        ]
        if len(plain) == len(readings):
            out_rows += plain
            return
    for sensor, value in readings.items():
        if value.__class__ is float and (status is None or sensor not in status):
            out_rows.append(_new_tuple(TelemetryRow, (twin_id, sensor, ts, value, seq, quality, source)))
        else:
            out_rows.append(typed_row(env, sensor, value))
    if env.text:
        for sensor, text in env.text.items():
            out_rows.append(typed_row(env, sensor, text))


class DecodedBatch:
    """The telemetry messages of one polled batch, judged once (decode, limits, guard).

    Its :meth:`split` takes any of these messages, in any grouping, and gives what
    :meth:`ReadingRules.split` would have given for them, without decoding again: the pipeline
    flow decodes a batch once and its ingest, reconciliation and models parts split it each their
    way (rows, events between control records, model readings).

    >>> from types import SimpleNamespace as Msg
    >>> m = Msg(key=b"p1", value=b'{"v":1,"twin_id":"p1","ts":"2026-01-01T00:00:00Z","seq":1,'
    ...         b'"source":"mqtt","readings":{"rpm":1.0}}', topic="t", partition=0, offset=7)
    >>> decoded = ReadingRules(Limits(), IngestGuard()).decode([m])
    >>> [r.sensor for r in decoded.split([m]).rows], len(decoded.split([m], rows=False).envelopes)
    (['rpm'], 1)
    """

    __slots__ = ("_judged", "limits")

    def __init__(self, messages: list[RawMessage], rules: ReadingRules, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        limits, guard = rules.limits, rules.guard
        self.limits = limits
        self._judged = {id(m): judge(m, limits, now, guard) for m in messages}

    def split(self, messages: list[RawMessage], now: datetime | None = None, *, rows: bool = True) -> Split:
        """The :class:`Split` of ``messages`` (each one of the decoded batch; ``now`` is not used:
        they were judged at the decoding time)."""
        out = Split()
        judged = self._judged
        for msg in messages:
            _add(out, judged[id(msg)], rows)
        return out


class Splitter(Protocol):
    """What turns telemetry messages into a :class:`Split`: :class:`ReadingRules` (decodes them) or
    a :class:`DecodedBatch` (decoded already)."""

    @property
    def limits(self) -> Limits: ...

    def split(self, messages: list[RawMessage], now: datetime | None = None, *, rows: bool = True) -> Split: ...


@dataclass(frozen=True, slots=True)
class Polled:
    """One polled batch of Kafka messages and the :class:`Splitter` that judges its telemetry: a
    flow's own rules (each flow decodes what it reads) or the batch decoded once (pipeline flow)."""

    messages: list[RawMessage]
    readings: Splitter

    def only(self, topics: frozenset[str]) -> Polled:
        """The messages of these topics (order kept), judged the same way."""
        return Polled([m for m in self.messages if m.topic in topics], self.readings)


def typed_row(env: Envelope, sensor: str, value: float | bool | str | None) -> TypedRow:
    """The row of a boolean, a text, a reading without a value, or a reading with a status name."""
    status = env.status.get(sensor) if env.status else None
    quality = QUALITY_CODE[env.quality_of(sensor)]
    if value.__class__ is str:
        return TypedRow(env.twin_id, sensor, env.ts, None, env.seq, quality, env.source, VALUE_TEXT, status, value)
    kind = VALUE_BOOLEAN if value.__class__ is bool else VALUE_NUMBER
    number = None if value is None else float(value)  # type: ignore[arg-type]
    return TypedRow(env.twin_id, sensor, env.ts, number, env.seq, quality, env.source, kind, status)


def dead_letter(
    msg: RawMessage, reason: str, detail: str, limits: Limits, now: datetime, field: str | None = None
) -> DeadLetter:
    """A dead letter of ``msg``: its original bytes (cut to the limit), key and headers, and why."""
    return dead_letter_of(
        msg.value,
        msg.key,
        reason,
        detail,
        max_value_bytes=limits.max_dead_letter_bytes,
        now=now,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        field=field,
        headers=[h for h in getattr(msg, "headers", None) or () if not h[0].startswith("dlq.")],
    )


def dead_letter_of(
    value: bytes | None,
    key: bytes | None,
    reason: str,
    detail: str,
    *,
    max_value_bytes: int,
    now: datetime,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    field: str | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> DeadLetter:
    """A dead letter of any bytes (a Kafka record, what a device sent to a bridge): the value and key
    cut to their limits (the original sizes kept), the headers passed on, and why.

    >>> d = dead_letter_of(b"x" * 2000, b"p1", "bad_json", "oops", max_value_bytes=1024, now=datetime.now(UTC))
    >>> len(d.value), d.truncated_from, d.key
    (1024, 2000, b'p1')
    """
    cut = value is not None and len(value) > max_value_bytes
    cut_key = key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES
    return DeadLetter(
        value=value[:max_value_bytes] if cut else value,  # type: ignore[index]
        key=key[:MAX_DEAD_LETTER_KEY_BYTES] if cut_key else key,  # type: ignore[index]
        reason=reason,
        detail=detail,
        topic=topic,
        partition=partition,
        offset=offset,
        rejected_at=now,
        truncated_from=len(value) if cut else None,  # type: ignore[arg-type]
        key_truncated_from=len(key) if cut_key else None,  # type: ignore[arg-type]
        field=field,
        original_headers=headers or None,
    )
