"""The telemetry envelope: one JSON message per device sample, Kafka key = twin_id.

This module is the one definition of the wire format and of what makes a message
invalid. It is plain Python (no Kafka, no Bytewax) so it is testable on bytes.

>>> raw = b'{"v":1,"twin_id":"pump-001","ts":"2026-11-25T08:00:00.123Z","seq":42,' \\
...       b'"source":"mqtt","readings":{"rpm":1450.0,"temp_c":65.2},"quality":"good"}'
>>> env = decode(raw)
>>> env.twin_id, env.seq, sorted(env.readings)
('pump-001', 42, ['rpm', 'temp_c'])
>>> decode(b'{"v":1}')
Traceback (most recent call last):
...
operators.envelope.Rejected: schema: Object missing required field `twin_id`
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

TWIN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SENSOR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
MAX_READINGS = 256
# A key must equal the twin_id (at most 128 ASCII characters), so a longer key is never valid.
MAX_KEY_BYTES = 128

TwinId = Annotated[str, msgspec.Meta(pattern=TWIN_ID_PATTERN)]
Sensor = Annotated[str, msgspec.Meta(pattern=SENSOR_PATTERN)]
Quality = Literal["good", "uncertain", "bad"]


class Envelope(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Version 1 of the telemetry envelope (see README, "Telemetry envelope")."""

    v: Literal[1]
    twin_id: TwinId
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    source: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    readings: Annotated[dict[Sensor, float], msgspec.Meta(min_length=1, max_length=MAX_READINGS)]
    quality: Quality = "good"


class Reason(StrEnum):
    """Why a message went to the dead-letter topic (the `dlq.reason` header)."""

    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    NON_FINITE = "non_finite"
    TS_FUTURE = "ts_future"
    TS_TOO_OLD = "ts_too_old"
    KEY_MISMATCH = "key_mismatch"
    KEY_TOO_LARGE = "key_too_large"
    UNKNOWN_TWIN = "unknown_twin"
    DUPLICATE_SEQ = "duplicate_seq"


class Rejected(ValueError):
    """A message that is not a valid envelope; ``reason`` is machine-readable."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


_decoder = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()


def decode(
    value: bytes | None,
    *,
    key: bytes | None = None,
    now: datetime | None = None,
    max_bytes: int = 64 * 1024,
    max_future_skew: timedelta = timedelta(minutes=5),
    max_age: timedelta = timedelta(days=3650),
) -> Envelope:
    """Parse and validate one message; raise :class:`Rejected` with the reason otherwise.

    ``key``, when given, must equal the envelope's twin_id (it decides the partition).
    ``now`` enables the plausibility checks on ``ts``.
    """
    if value is None:
        raise Rejected(Reason.SCHEMA, "empty message (tombstone)")
    if len(value) > max_bytes:
        raise Rejected(Reason.TOO_LARGE, f"{len(value)} bytes > limit {max_bytes}")
    if key is not None and len(key) > MAX_KEY_BYTES:
        raise Rejected(Reason.KEY_TOO_LARGE, f"Kafka key of {len(key)} bytes > limit {MAX_KEY_BYTES}")
    try:
        env = _decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.SCHEMA, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec raises it for invalid UTF-8 inside strings
        raise Rejected(Reason.BAD_JSON, f"invalid UTF-8: {exc.reason} at byte {exc.start}") from None
    for name, reading in env.readings.items():
        if not math.isfinite(reading):
            raise Rejected(Reason.NON_FINITE, f"reading {name!r} is {reading}")
    if key is not None and key != env.twin_id.encode():
        raise Rejected(
            Reason.KEY_MISMATCH,
            f"Kafka key {key[:140]!r} differs from twin_id {env.twin_id!r}",
        )
    if now is not None:
        if env.ts - now > max_future_skew:
            raise Rejected(Reason.TS_FUTURE, f"ts {env.ts.isoformat()} is ahead of {now.isoformat()}")
        if now - env.ts > max_age:
            raise Rejected(Reason.TS_TOO_OLD, f"ts {env.ts.isoformat()} is older than {max_age}")
    return env


def encode(env: Envelope) -> bytes:
    """Serialise an envelope to its JSON wire form."""
    return _encoder.encode(env)
