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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from operators.envelope import Envelope, Rejected, decode
from operators.guard import IngestGuard

QUALITY_CODE = {"good": 0, "uncertain": 1, "bad": 2}
MAX_DEAD_LETTER_KEY_BYTES = 1024


class RawMessage(Protocol):
    """What the ingest step needs from a Kafka message (Bytewax's KafkaSourceMessage fits)."""

    key: bytes | None
    value: bytes | None
    topic: str | None
    partition: int | None
    offset: int | None


class TelemetryRow(NamedTuple):
    """One sensor value; identity (twin_id, sensor, ts) makes sink writes idempotent."""

    twin_id: str
    sensor: str
    ts: datetime
    value: float
    seq: int
    quality: int
    source: str


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

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers describing the rejection (the value stays the original bytes, up to a limit)."""
        cut = [
            (name, str(size).encode())
            for name, size in (
                ("dlq.truncated_from", self.truncated_from),
                ("dlq.key_truncated_from", self.key_truncated_from),
            )
            if size is not None
        ]
        return [
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


@dataclass(slots=True)
class Split:
    """One polled batch, decoded: rows for the database, envelopes for per-twin operators."""

    rows: list[TelemetryRow] = field(default_factory=list)
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

    ``guard`` (optional) adds the unknown-twin and duplicate-seq checks (:mod:`operators.guard`).
    ``rows=False`` keeps only the envelopes (for consumers that do not write telemetry rows).
    """
    now = now or datetime.now(UTC)
    out = Split()
    out_rows = out.rows
    for msg in messages:
        try:
            env = decode(
                msg.value,
                key=msg.key,
                now=now,
                max_bytes=limits.max_bytes,
                max_future_skew=limits.max_future_skew,
                max_age=limits.max_age,
            )
            if guard is not None and not guard.admit(env):
                out.absorbed += 1
                continue
        except Rejected as exc:
            value, key = msg.value, msg.key
            cut = value is not None and len(value) > limits.max_dead_letter_bytes
            cut_key = key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES
            out.dead.append(
                DeadLetter(
                    value=value[: limits.max_dead_letter_bytes] if cut else value,
                    key=key[:MAX_DEAD_LETTER_KEY_BYTES] if cut_key else key,
                    reason=exc.reason.value,
                    detail=exc.detail,
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    rejected_at=now,
                    truncated_from=len(value) if cut else None,
                    key_truncated_from=len(key) if cut_key else None,
                )
            )
            continue
        out.envelopes.append(env)
        if not rows:
            continue
        quality = QUALITY_CODE[env.quality]
        for sensor, value in env.readings.items():
            out_rows.append(TelemetryRow(env.twin_id, sensor, env.ts, value, env.seq, quality, env.source))
    return out
