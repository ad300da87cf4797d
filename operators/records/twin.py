"""Wire records of twin reconciliation (JSON on Kafka, key = twin_id) and the operator's inputs.

``twin.desired``  :class:`DesiredUpdate`   (signed, :mod:`~operators.security.request_auth`; ``twin set-desired``)
``twin.commands`` :class:`Command`         (read by the protocol connectors)
``twin.acks``     :class:`Ack`             (written by the protocol connectors; key = twin_id)
``twin.desync``   :class:`DesyncEvent`     (kind ``desync``, ``command_failed``, ``command_rejected``)
``twin.desired.outcomes`` :class:`DesiredOutcome` (the gate's verdict on every request)
``telemetry.late``:class:`LateReading`     (readings beyond the allowed lateness)

>>> d, signed, signature = decode_desired(b'{"twin_id":"p1","values":{"speed":1200},"expected_version":3}')
>>> d.values, d.expected_version, signed is None   # unsigned: the gate refuses it
({'speed': 1200.0}, 3, True)
>>> decode_ack(b'{"command_id":"p1:4:speed","status":"applied"}').status
'applied'
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from operators.records.commands import Ack, Command  # noqa: F401 - the one twin.commands and twin.acks records (re-exported)
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN, Reason, Rejected

TwinId = Annotated[str, msgspec.Meta(pattern=TWIN_ID_PATTERN)]
Param = Annotated[str, msgspec.Meta(pattern=SENSOR_PATTERN)]
Mode = Literal["normal", "maintenance", "simulating"]


RequestId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{8,128}$")]
SubjectId = Annotated[str, msgspec.Meta(max_length=200)]


class DesiredUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A request to change desired values (and optionally the operator mode) of one twin.

    ``expected_version`` is the twin's *desired version* (it moves only when desired values or
    the mode change). ``subject``/``on_behalf_of`` name who asks; they count only once the
    signature verified (:mod:`operators.security.request_auth`); ``author`` is set by the gate to the
    authenticated subject and is never taken from the wire.
    """

    twin_id: TwinId
    # Numbers, or booleans for on/off parameters (compared as 1/0 against the reported value).
    values: dict[Param, float | bool] = {}
    expected_version: Annotated[int, msgspec.Meta(ge=0)] | None = None
    author: Annotated[str, msgspec.Meta(max_length=200)] = "unknown"
    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    issued_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    # Operator mode: maintenance suppresses escalation, simulating marks what-if runs.
    mode: Mode | None = None
    request_id: RequestId | None = None
    subject: SubjectId = ""
    on_behalf_of: SubjectId | None = None


class SignedDesired(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The wire form of a signed request: the request's JSON text and its base64 signature."""

    signed: Annotated[str, msgspec.Meta(max_length=64 * 1024)]
    signature: Annotated[str, msgspec.Meta(max_length=200)]


class DesiredOutcome(msgspec.Struct, frozen=True):
    """The gate's verdict on one request (``twin.desired.outcomes``; denials also on
    ``twin.desired.rejected``). ``decision``: ``applied`` or ``denied``."""

    request_id: str
    twin_id: str
    actor: str
    decision: str
    reason: str
    detail: str
    at: datetime
    version: int
    desired_version: int
    via: str | None = None
    values: dict[str, float | bool] = {}
    mode: str | None = None
    expected_version: int | None = None
    commands: list[str] = []


DesyncKind = Literal["desync", "resynced", "command_failed", "command_rejected", "offline", "online"]


class DesyncEvent(msgspec.Struct, frozen=True):
    """The one ``twin.desync`` record: the twin cannot bring its device to the desired state.

    ``desync``: desynced longer than ``max_desync_time_s`` (once per episode; the alerts flow opens
    a ``desync`` alert); ``resynced``: an escalated twin is synchronized again (the alert's condition
    clears); ``command_failed``: a command given up after its attempts;
    ``command_rejected``: a command the bridge or device refused; ``offline``: the device could not be
    reached for ``offline_alert_after_s`` (detail ``since``, ``duration_s``, ``reason``; the alerts flow
    opens a ``device_offline`` alert); ``online``: such a device is back (the alert clears). ``version``
    is the twin's state version it belongs to; ``detail`` the facts (docs/reconciliation.md, "Commands, retries,
    escalation")."""

    twin_id: TwinId
    kind: DesyncKind
    at: Annotated[datetime, msgspec.Meta(tz=True)]
    version: int
    detail: dict[str, Any] = {}


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
    # Why the device cannot be reached (quality UNREACHABLE, :mod:`operators.twin.connectivity`).
    reason: str | None = None
    # The sensors with a no-communication status (quality UNREACHABLE); empty: the whole device
    # (a death, a last will).
    lost: tuple[str, ...] = ()


class AckEvent(msgspec.Struct, frozen=True):
    """An ack with the event time it is applied at (applied_at, else the Kafka timestamp)."""

    ack: Ack
    at: datetime


class DesiredEvent(msgspec.Struct, frozen=True):
    """A desired update with its event time (issued_at, else the Kafka timestamp).

    ``signed``/``signature``: the exact bytes the sender signed and the signature (None when the
    record was not signed); ``position``: (topic, partition, offset) of the Kafka record."""

    update: DesiredUpdate
    at: datetime
    signed: bytes | None = None
    signature: bytes | None = None
    position: tuple[str, int, int] | None = None


_enc = msgspec.json.Encoder()
_desired_dec = msgspec.json.Decoder(DesiredUpdate)
_signed_dec = msgspec.json.Decoder(SignedDesired)
_ack_dec = msgspec.json.Decoder(Ack)
_desync_dec = msgspec.json.Decoder(DesyncEvent)


# A record or dict as JSON: the encoder's own method (no Python call around it; a twin version per reading).
encode: Callable[[msgspec.Struct | dict[str, Any]], bytes] = _enc.encode


def _decode(decoder: msgspec.json.Decoder, value: bytes | None) -> Any:
    if value is None:
        raise Rejected(Reason.SCHEMA, "empty message (tombstone)")
    try:
        return decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.SCHEMA, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)) from None


def decode_desired(value: bytes | None, key: bytes | None = None) -> tuple[DesiredUpdate, bytes | None, bytes | None]:
    """Parse a ``twin.desired`` record into (update, signed bytes, signature); raise :class:`Rejected`.

    A signed envelope (``{"signed": …, "signature": …}``) gives the request inside it with its
    bytes and signature; a bare (unsigned) update gives None for both: the gate refuses it.
    """
    signed = signature = None
    if value is not None and b'"signed"' in value and "signed" in _top_level_keys(value):
        env: SignedDesired = _decode(_signed_dec, value)
        signed = env.signed.encode()
        try:
            signature = base64.b64decode(env.signature, validate=True)
        except binascii.Error:
            raise Rejected(Reason.SCHEMA, "signature is not base64") from None
        upd: DesiredUpdate = _decode(_desired_dec, signed)
    else:
        upd = _decode(_desired_dec, value)
    for name, v in upd.values.items():
        if not math.isfinite(v):
            raise Rejected(Reason.NON_FINITE, f"desired {name!r} is {v}")
    if key is not None and key != upd.twin_id.encode():
        raise Rejected(Reason.KEY_MISMATCH, f"Kafka key {key[:140]!r} differs from twin_id {upd.twin_id!r}")
    if not upd.values and upd.mode is None:
        raise Rejected(Reason.SCHEMA, "a desired update needs `values` or `mode`")
    return upd, signed, signature


def _top_level_keys(value: bytes) -> set[str]:
    try:
        obj = msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)) from None
    return set(obj) if isinstance(obj, dict) else set()


def decode_ack(value: bytes | None) -> Ack:
    """Parse a ``twin.acks`` record (the twin is the Kafka key)."""
    return _decode(_ack_dec, value)


def decode_desync(value: bytes | None) -> DesyncEvent:
    """Parse a ``twin.desync`` record; raise :class:`Rejected` (a dead-letter reason) otherwise."""
    return _decode(_desync_dec, value)
