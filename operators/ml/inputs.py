"""Turn a polled batch of the models flow's topics into per-twin model items and dead letters.

Plain Python, no I/O. Readings are judged by the same :class:`~operators.telemetry.ingest.ReadingRules` as
in the telemetry flow (limits, twin registry, duplicate guard): what that flow rejects or absorbs
is not scored either. Rejected readings are dead-lettered by the telemetry flow (one dead letter
per message), not here; bad status, control and event records become dead letters here, in
the one convention of :func:`operators.telemetry.ingest.dead_letter` (original bytes, headers, reason).

>>> from types import SimpleNamespace as Msg
>>> from operators.telemetry.ingest import ReadingRules
>>> raw = Msg(key=b"p1", value=b'{"v":1,"twin_id":"p1","ts":"2026-01-01T00:00:00Z","seq":1,'
...           b'"source":"mqtt","readings":{"rpm":1.0}}', topic="raw", partition=0, offset=1)
>>> bad = Msg(key=b"p1", value=b"{oops", topic="events", partition=0, offset=2)
>>> out = decode_batch([raw, bad], ModelTopics("raw", "status", "control", "events"), ReadingRules())
>>> [(twin, [type(i).__name__ for i in items]) for twin, items in out.items], [d.reason for d in out.dead]
([('p1', ['Reading'])], ['bad_json'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from operators.keyed_batches import group_by_key
from operators.ml.live_step import Event, Item, Rebaseline, Reset, Status, reading_of
from operators.records import model_control, twin_events
from operators.records.alerts import TwinStatus, decode
from operators.records.envelope import Reason, Rejected
from operators.telemetry.ingest import DeadLetter, RawMessage, Splitter, dead_letter


@dataclass(frozen=True, slots=True)
class ModelTopics:
    raw: str
    status: str
    control: str
    events: str


@dataclass(slots=True)
class ModelInputs:
    """``items``: one ``(twin_id, [items in order])`` per twin of the batch; ``dead``: bad records."""

    items: list[tuple[str, list[Item]]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def decode_batch(
    messages: list[RawMessage], topics: ModelTopics, rules: Splitter, now: datetime | None = None
) -> ModelInputs:
    """Decode a mixed batch: the readings first (in order), then status, control and event records."""
    now = now or datetime.now(UTC)
    out: list[tuple[str, Item]] = []
    dead: list[DeadLetter] = []
    readings = [m for m in messages if m.topic == topics.raw]
    if readings:
        for env in rules.split(readings, now, rows=False).envelopes:
            if (reading := reading_of(env)) is not None:
                out.append((env.twin_id, reading))
    for m in messages:
        try:
            if m.topic == topics.status:
                st = decode(TwinStatus, m.value)
                out.append((st.twin_id, Status(not st.learn)))  # simulating: no learning either
            elif m.topic == topics.control:
                rec = model_control.decode(m.value or b"")
                if rec.action == "rebaseline":
                    out.append((rec.twin_id, Rebaseline(rec.sensor, rec.requested_by)))
                else:
                    out.append((rec.twin_id, Reset(rec.requested_by)))
            elif m.topic == topics.events:
                ev = twin_events.decode(m.value)
                out.append((ev.twin_id, Event(ev.kind, ev.time)))
        except Rejected as exc:
            dead.append(dead_letter(m, exc.reason.value, exc.detail, rules.limits, now))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            dead.append(dead_letter(m, Reason.SCHEMA.value, str(exc), rules.limits, now))
    return ModelInputs(group_by_key(out), dead)
