"""Turn a batch of Kafka messages from telemetry.raw, twin.desired and twin.acks into twin events.

Plain Python, no I/O. Telemetry goes through :meth:`operators.telemetry.ingest.ReadingRules.split` (one
definition of a valid envelope); an envelope's readings become one :class:`Reported` event.
An envelope that says its device cannot be reached (:func:`~operators.twin.connectivity.unreachable`)
becomes a :class:`Reported` of quality ``UNREACHABLE`` with the reason and the sensors whose status says
so (``lost``; none for a death or last will: the whole device). Invalid desired updates and
acks become :class:`DeadLetter` records with the reason.

>>> from types import SimpleNamespace as Msg
>>> raw = Msg(key=b"p1", value=b'{"v":1,"twin_id":"p1","ts":"2026-01-01T00:00:00Z","seq":1,'
...           b'"source":"mqtt","readings":{"rpm":1.0,"temp":2.0}}', topic="raw", partition=0, offset=1,
...           timestamp=(1, 0))
>>> ack = Msg(key=b"p1", value=b'{"command_id":"p1:2:rpm","status":"applied"}', topic="acks",
...           partition=0, offset=5, timestamp=(1, 1767225600000))
>>> out = decode_batch([raw, ack], InputTopics("raw", "desired", "acks"), ReadingRules())
>>> [(twin, type(ev).__name__) for twin, ev in out.events], out.events[0][1].values
([('p1', 'Reported'), ('p1', 'AckEvent')], {'rpm': 1.0, 'temp': 2.0})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from operators.records.envelope import Envelope, Reason, Rejected
from operators.records.twin import AckEvent, DesiredEvent, Reported, decode_ack, decode_desired
from operators.telemetry.ingest import (
    QUALITY_CODE,
    DeadLetter,
    RawMessage,
    ReadingRules,
    Splitter,
    TelemetryRow,
    dead_letter,
)
from operators.twin.connectivity import ONLINE_READING, UNREACHABLE, lost_sensors, unreachable

__all__ = ["InputTopics", "ReadingRules", "TwinInputs", "decode_batch", "group_envelopes"]


@dataclass(frozen=True, slots=True)
class InputTopics:
    raw: str
    desired: str
    acks: str


@dataclass(slots=True)
class TwinInputs:
    events: list[tuple[str, Reported | DesiredEvent | AckEvent]] = field(default_factory=list)
    rows: list[TelemetryRow] = field(default_factory=list)
    dead_telemetry: list[DeadLetter] = field(default_factory=list)
    dead_control: list[DeadLetter] = field(default_factory=list)


def _kafka_time(msg: RawMessage, fallback: datetime) -> datetime:
    ts = getattr(msg, "timestamp", None)
    if ts and ts[0] != 0 and ts[1] > 0:  # (type, ms); type 0 = not available
        return datetime.fromtimestamp(ts[1] / 1000, tz=UTC)
    return fallback


def group_envelopes(envelopes: list[Envelope]) -> list[tuple[str, Reported]]:
    """One Reported event per envelope; consecutive envelopes of one (twin, ts, seq) merge into one."""
    out: list[tuple[str, Reported]] = []
    prev: Envelope | None = None
    for env in envelopes:
        values = env.readings
        if None in values.values() or env.status is not None:
            # A reading without a value, or with a Bad status, says nothing about the twin's state.
            offline = unreachable(env) if env.status is not None else None
            values = {k: v for k, v in values.items() if v is not None and env.quality_of(k) != "bad"}
            if offline is not None:  # the device cannot be reached: its good values (if any) with the reason
                lost = lost_sensors(env)
                out.append((env.twin_id, Reported(env.ts, env.seq, env.source, values, UNREACHABLE, offline, lost)))
            if not values or offline is not None:
                prev = None
                continue
        elif ONLINE_READING in values and values[ONLINE_READING] is False:  # a death or a last will
            out.append((env.twin_id, Reported(env.ts, env.seq, env.source, values, UNREACHABLE, unreachable(env))))
            prev = None
            continue
        if prev is not None and env.twin_id == prev.twin_id and env.ts == prev.ts and env.seq == prev.seq:
            first = out[-1][1]
            merged = {**first.values, **values}
            out[-1] = (env.twin_id, Reported(first.ts, first.seq, first.source, merged, first.quality))
        else:
            out.append((env.twin_id, Reported(env.ts, env.seq, env.source, values, QUALITY_CODE[env.quality])))
        prev = env
    return out


def decode_batch(
    messages: list[RawMessage],
    topics: InputTopics,
    rules: Splitter,
    now: datetime | None = None,
    *,
    rows: bool = True,
) -> TwinInputs:
    """Decode a mixed batch, keeping the order of messages per twin.

    Telemetry is judged by ``rules`` (:class:`~operators.telemetry.ingest.ReadingRules`: the same limits
    and guard as the telemetry flow; or the batch decoded once,
    :class:`~operators.telemetry.ingest.DecodedBatch`). ``rows=False``: no telemetry rows (the flow
    does not write telemetry), the events are the same."""
    now = now or datetime.now(UTC)
    out = TwinInputs()
    pending_raw: list[RawMessage] = []

    def flush_raw() -> None:
        if pending_raw:
            split = rules.split(pending_raw, now, rows=rows)
            out.dead_telemetry.extend(split.dead)
            out.rows.extend(split.rows)  # none when rows=False
            out.events.extend(group_envelopes(split.envelopes))
            pending_raw.clear()

    for msg in messages:
        if msg.topic == topics.raw:
            pending_raw.append(msg)
            continue
        flush_raw()
        try:
            if msg.topic == topics.desired:
                upd, signed, signature = decode_desired(msg.value, msg.key)
                at = upd.issued_at or _kafka_time(msg, now)
                where = (msg.topic, msg.partition, msg.offset)
                out.events.append((upd.twin_id, DesiredEvent(upd, at, signed, signature, where)))
            elif msg.topic == topics.acks:
                if not msg.key:
                    raise Rejected(Reason.SCHEMA, "an ack needs the twin_id as its Kafka key")
                ack = decode_ack(msg.value)
                out.events.append((msg.key.decode(), AckEvent(ack, ack.applied_at or _kafka_time(msg, now))))
            else:
                raise Rejected(Reason.SCHEMA, f"unexpected topic {msg.topic!r}")
        except (Rejected, UnicodeDecodeError) as exc:
            reason = exc.reason.value if isinstance(exc, Rejected) else Reason.SCHEMA.value
            detail = exc.detail if isinstance(exc, Rejected) else f"key is not UTF-8: {exc}"
            out.dead_control.append(dead_letter(msg, reason, detail, rules.limits, now))
    flush_raw()
    return out
