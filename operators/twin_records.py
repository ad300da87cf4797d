"""Wire records of twin reconciliation (JSON on Kafka, key = twin_id) and the operator's inputs.

``twin.desired``  :class:`DesiredUpdate`   (written by ``twinflow twin set-desired``)
``twin.commands`` :class:`Command`         (read by the protocol connectors)
``twin.acks``     :class:`Ack`             (written by the protocol connectors; key = twin_id)
``twin.alerts``   :class:`Alert`           (kind ``desync``, ``command_failed``, ``command_rejected``,
                                            ``desired_rejected``)
``telemetry.late``:class:`LateReading`     (readings beyond the allowed lateness)

>>> d = decode_desired(b'{"twin_id":"p1","values":{"speed":1200},"expected_version":3,"author":"ann"}')
>>> d.values, d.expected_version, d.reason
({'speed': 1200.0}, 3, '')
>>> decode_ack(b'{"command_id":"p1:4:speed","status":"applied"}').status
'applied'
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from operators.commands import Command  # noqa: F401 - the one twin.commands record (re-exported)
from operators.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN, Reason, Rejected

TwinId = Annotated[str, msgspec.Meta(pattern=TWIN_ID_PATTERN)]
Param = Annotated[str, msgspec.Meta(pattern=SENSOR_PATTERN)]
Mode = Literal["normal", "maintenance", "simulating"]
AckStatus = Literal["applied", "rejected", "failed", "expired"]


class DesiredUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A request to change desired values (and optionally the operator mode) of one twin."""

    twin_id: TwinId
    # Numbers, or booleans for on/off parameters (compared as 1/0 against the reported value).
    values: dict[Param, float | bool] = {}
    expected_version: Annotated[int, msgspec.Meta(ge=0)] | None = None
    author: str = "unknown"
    reason: str = ""
    issued_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    # Operator mode: maintenance suppresses escalation, simulating marks what-if runs.
    mode: Mode | None = None


class Ack(msgspec.Struct, frozen=True):
    """The device's answer to a command."""

    command_id: str
    status: AckStatus
    error: str | None = None
    applied_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class Alert(msgspec.Struct, frozen=True):
    twin_id: str
    kind: str
    at: datetime
    version: int
    detail: dict[str, Any]


class LateReading(msgspec.Struct, frozen=True):
    """A reading older than the watermark minus the allowed lateness: not in any window."""

    twin_id: str
    sensor: str
    ts: datetime
    value: float
    seq: int
    source: str
    reason: str
    watermark: datetime
    allowed_lateness_s: float


class Reported(msgspec.Struct, frozen=True):
    """One envelope's readings as the reconciler sees them."""

    ts: datetime
    seq: int
    source: str
    values: dict[str, float | bool]
    quality: int = 0


class AckEvent(msgspec.Struct, frozen=True):
    """An ack with the event time it is applied at (applied_at, else the Kafka timestamp)."""

    ack: Ack
    at: datetime


class DesiredEvent(msgspec.Struct, frozen=True):
    """A desired update with its event time (issued_at, else the Kafka timestamp)."""

    update: DesiredUpdate
    at: datetime


_enc = msgspec.json.Encoder()
_desired_dec = msgspec.json.Decoder(DesiredUpdate)
_ack_dec = msgspec.json.Decoder(Ack)


def encode(record: msgspec.Struct | dict[str, Any]) -> bytes:
    return _enc.encode(record)


def _decode(decoder: msgspec.json.Decoder, value: bytes | None) -> Any:
    if value is None:
        raise Rejected(Reason.SCHEMA, "empty message (tombstone)")
    try:
        return decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.SCHEMA, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)) from None


def decode_desired(value: bytes | None, key: bytes | None = None) -> DesiredUpdate:
    """Parse a ``twin.desired`` record; raise :class:`Rejected` with the reason otherwise."""
    upd: DesiredUpdate = _decode(_desired_dec, value)
    for name, v in upd.values.items():
        if not math.isfinite(v):
            raise Rejected(Reason.NON_FINITE, f"desired {name!r} is {v}")
    if key is not None and key != upd.twin_id.encode():
        raise Rejected(Reason.KEY_MISMATCH, f"Kafka key {key[:140]!r} differs from twin_id {upd.twin_id!r}")
    if not upd.values and upd.mode is None:
        raise Rejected(Reason.SCHEMA, "a desired update needs `values` or `mode`")
    return upd


def decode_ack(value: bytes | None) -> Ack:
    """Parse a ``twin.acks`` record (the twin is the Kafka key)."""
    return _decode(_ack_dec, value)
