"""The telemetry envelope: one JSON message per device sample, Kafka key = twin_id.

This module is the one definition of the wire format and of what makes a message
invalid. It is plain Python (no Kafka, no Bytewax) so it is testable on bytes.

A reading is a number, a boolean, or ``null`` (no value: the device reported a status only,
e.g. OPC-UA ``BadSensorFailure``). ``status`` optionally names a reading's status code
(OPC-UA style: ``Good…``, ``Uncertain…``, ``Bad…``); its class sets that reading's quality.
A message whose envelope is valid but one of whose values is not (a string, a non-finite
number, a ``null`` without a Bad/Uncertain status) keeps its other readings:
:func:`decode_partial` returns the envelope without the bad values and a
:class:`FieldRejected` naming each (``readings.speed: str 'fast' …``).

>>> raw = b'{"v":1,"twin_id":"pump-001","ts":"2026-11-25T08:00:00.123Z","seq":42,' \\
...       b'"source":"mqtt","readings":{"rpm":1450.0,"temp_c":65.2},"quality":"good"}'
>>> env = decode(raw)
>>> env.twin_id, env.seq, sorted(env.readings)
('pump-001', 42, ['rpm', 'temp_c'])
>>> decode(b'{"v":1}')
Traceback (most recent call last):
...
operators.records.envelope.Rejected: schema: Object missing required field `twin_id`
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from math import isfinite
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

TWIN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SENSOR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
SOURCE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# OPC-UA status code names (and the same convention for other protocols): the prefix is the class.
STATUS_PATTERN = r"^(Good|Uncertain|Bad)[A-Za-z0-9_]{0,63}$"
MAX_READINGS = 256
# A key must equal the twin_id (at most 128 ASCII characters), so a longer key is never valid.
MAX_KEY_BYTES = 128

TwinId = Annotated[str, msgspec.Meta(pattern=TWIN_ID_PATTERN)]
Sensor = Annotated[str, msgspec.Meta(pattern=SENSOR_PATTERN)]
Quality = Literal["good", "uncertain", "bad"]
StatusName = Annotated[str, msgspec.Meta(pattern=STATUS_PATTERN)]
# A reading's value: a number, a boolean, or None (no value; needs a Bad/Uncertain status or quality).
Value = float | bool | None
MAX_TEXT = 1024
TextValue = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class Envelope(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Version 1 of the telemetry envelope (see README, "Telemetry envelope")."""

    v: Literal[1]
    twin_id: TwinId
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    source: Annotated[str, msgspec.Meta(pattern=SOURCE_PATTERN)]
    readings: Annotated[dict[Sensor, Value], msgspec.Meta(max_length=MAX_READINGS)]
    quality: Quality = "good"
    # Status code name per reading (optional); a reading's quality is its status class when given.
    status: dict[Sensor, StatusName] | None = None
    # Text readings (a Modbus string, an OPC-UA String node), kept apart from the numbers on purpose:
    # a string in `readings` is a wrong type, never a text value.
    text: Annotated[dict[Sensor, TextValue], msgspec.Meta(max_length=MAX_READINGS)] | None = None

    def quality_of(self, sensor: str) -> str:
        """The quality of one reading: its status class when it has a status, else the envelope's."""
        st = self.status.get(sensor) if self.status else None
        return self.quality if st is None else quality_of_status(st)


def quality_of_status(status: str) -> Quality:
    """The quality class of an OPC UA status code name (the one place it is decided).

    >>> [quality_of_status(s) for s in ("GoodClamped", "UncertainLastUsableValue", "BadSensorFailure")]
    ['good', 'uncertain', 'bad']
    """
    return "good" if status.startswith("Good") else "uncertain" if status.startswith("Uncertain") else "bad"


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
    # A device timestamp a bridge cannot read under its timestamp policy (docs/connectors.md).
    TS_INVALID = "ts_invalid"


class Rejected(ValueError):
    """A message that is not a valid envelope; ``reason`` is machine-readable.

    ``field`` names the offending field (``readings.temp``) when one value is the problem."""

    def __init__(self, reason: Reason, detail: str, field: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


class FieldRejected(NamedTuple):
    """One value rejected from an otherwise valid message (its siblings are kept)."""

    field: str  # e.g. "readings.temp_c"
    reason: Reason
    detail: str  # starts with the field: "readings.temp_c: str 'hot' is not a number, boolean or null"


class _Unchecked(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """:class:`Envelope` without its name patterns (every other constraint the same): the fast path
    of :func:`_decode_envelope`, whose names are then checked against the names seen valid before."""

    v: Literal[1]
    twin_id: str
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    source: str
    readings: Annotated[dict[str, Value], msgspec.Meta(max_length=MAX_READINGS)]
    quality: Quality = "good"
    status: dict[str, str] | None = None
    text: Annotated[dict[str, TextValue], msgspec.Meta(max_length=MAX_READINGS)] | None = None


_decoder = msgspec.json.Decoder(Envelope)
_fast_decoder = msgspec.json.Decoder(_Unchecked)
_encoder = msgspec.json.Encoder()
_SENSOR_RE = re.compile(SENSOR_PATTERN)
_STATUS_RE = re.compile(STATUS_PATTERN)
_TWIN_ID_RE = re.compile(TWIN_ID_PATTERN)
_SOURCE_RE = re.compile(SOURCE_PATTERN)
# Names that matched their pattern (msgspec checks a pattern with re.search on every value: 3.6 µs of an
# envelope's 4.7 µs); a device sends the same few names again and again. Bounded: cleared when full.
MAX_KNOWN_NAMES = 100_000
_known: dict[re.Pattern[str], set[str]] = {rx: set() for rx in (_SENSOR_RE, _STATUS_RE, _TWIN_ID_RE, _SOURCE_RE)}


def _matches(name: str, rx: re.Pattern[str]) -> bool:
    """Whether ``name`` matches ``rx`` as msgspec checks a pattern (``re.search``), remembered."""
    known = _known[rx]
    if name in known:
        return True
    if rx.search(name) is None:
        return False
    if len(known) >= MAX_KNOWN_NAMES:
        known.clear()
    known.add(name)
    return True


def _names_ok(env: _Unchecked) -> bool:
    """Every name of ``env`` matches the pattern :class:`Envelope` gives it."""
    sensors = _known[_SENSOR_RE]
    if env.twin_id not in _known[_TWIN_ID_RE] and not _matches(env.twin_id, _TWIN_ID_RE):
        return False
    if env.source not in _known[_SOURCE_RE] and not _matches(env.source, _SOURCE_RE):
        return False
    if not sensors.issuperset(env.readings):  # one C-level pass over the names known valid
        for name in env.readings:
            if name not in sensors and not _matches(name, _SENSOR_RE):
                return False
    if env.status is not None:
        for name, st in env.status.items():
            if not (_matches(name, _SENSOR_RE) and _matches(st, _STATUS_RE)):
                return False
    if env.text is not None:
        for name in env.text:
            if not _matches(name, _SENSOR_RE):
                return False
    return True


def _decode_envelope(value: bytes) -> Envelope:
    """``msgspec.json.decode(value, type=Envelope)``, with the same result and the same errors, about
    four times faster: decoded without the name patterns, the names checked against those seen valid
    before; anything else (an invalid message, a name that does not match) is decoded again strictly."""
    try:
        e = _fast_decoder.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return _decoder.decode(value)  # raises the strict decoder's error
    if not _names_ok(e):
        return _decoder.decode(value)
    return Envelope(e.v, e.twin_id, e.ts, e.seq, e.source, e.readings, e.quality, e.status, e.text)


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

    Strict: one bad value rejects the message (``Rejected.field`` names it); the ingest uses
    :func:`decode_partial`, which keeps the other values. ``key``, when given, must equal the
    envelope's twin_id (it decides the partition). ``now`` enables the plausibility checks on ``ts``.
    """
    env, bad = decode_partial(
        value, key=key, now=now, max_bytes=max_bytes, max_future_skew=max_future_skew, max_age=max_age
    )
    if bad:
        raise Rejected(bad[0].reason, bad[0].detail, bad[0].field)
    return env


def decode_partial(
    value: bytes | None,
    *,
    key: bytes | None = None,
    now: datetime | None = None,
    max_bytes: int = 64 * 1024,
    max_future_skew: timedelta = timedelta(minutes=5),
    max_age: timedelta = timedelta(days=3650),
) -> tuple[Envelope, list[FieldRejected]]:
    """Like :func:`decode`, but a bad value only removes that value: returns the envelope of the
    valid readings and one :class:`FieldRejected` per removed value. Raises :class:`Rejected` when
    the message as a whole is invalid (or no valid reading is left).

    >>> env, bad = decode_partial(b'{"v":1,"twin_id":"p","ts":"2026-01-01T00:00:00Z","seq":1,'
    ...     b'"source":"mqtt","readings":{"flow":1.5,"running":true,"mode":"auto"}}')
    >>> env.readings, [b.detail for b in bad]
    ({'flow': 1.5, 'running': True}, ["readings.mode: str 'auto' is not a number, a boolean or null"])
    """
    if value is None:
        raise Rejected(Reason.SCHEMA, "empty message (tombstone)")
    if len(value) > max_bytes:
        raise Rejected(Reason.TOO_LARGE, f"{len(value)} bytes > limit {max_bytes}")
    if key is not None and len(key) > MAX_KEY_BYTES:
        raise Rejected(Reason.KEY_TOO_LARGE, f"Kafka key of {len(key)} bytes > limit {MAX_KEY_BYTES}")
    bad: list[FieldRejected] = []
    try:
        env = _decode_envelope(value)
    except msgspec.ValidationError as exc:
        env = _salvage(value, exc, bad)
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec raises it for invalid UTF-8 inside strings
        raise Rejected(Reason.BAD_JSON, f"invalid UTF-8: {exc.reason} at byte {exc.start}") from None
    if not env.readings and not env.text:
        raise Rejected(Reason.SCHEMA, "no readings: `readings` (or `text`) needs at least one value")
    if env.status is not None or not _finite(env.readings):  # rare: checked in full only then
        env = _drop_bad_values(env, bad)
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
    return env, bad


def _finite(readings: dict[str, Value]) -> bool:
    """False if a reading may be None or not finite; their sum is not finite then (or raises), and
    it is summed in C. A sum that overflows is a false alarm: :func:`_drop_bad_values` keeps it all.

    >>> _finite({"a": 1.0, "b": True}), _finite({"a": 1.0, "b": None}), _finite({"a": float("nan")})
    (True, False, False)
    """
    try:
        return isfinite(sum(readings.values()))  # type: ignore[arg-type]
    except TypeError:  # a None
        return False


def _show(value: Any) -> str:
    """A value's type and a short repr for a rejection detail: ``str 'fast'``."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '…' if len(text) > 60 else text}"


def _sensor_ok(name: object) -> bool:
    return isinstance(name, str) and _SENSOR_RE.match(name) is not None


def _salvage(value: bytes, exc: msgspec.ValidationError, bad: list[FieldRejected]) -> Envelope:
    """The envelope without its invalid readings/status entries (each added to ``bad``), or raise."""
    try:
        doc = msgspec.json.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise Rejected(Reason.SCHEMA, str(exc)) from None
    readings = doc.get("readings") if isinstance(doc, dict) else None
    if not isinstance(readings, dict) or len(readings) > MAX_READINGS:
        raise Rejected(Reason.SCHEMA, str(exc)) from None
    kept: dict[str, Any] = {}
    for name, v in readings.items():
        if not _sensor_ok(name):
            bad.append(_field(f"readings.{name[:80]}", Reason.SCHEMA, f"sensor name must match {SENSOR_PATTERN}"))
        elif type(v) is float and not isfinite(v):
            bad.append(_field(f"readings.{name}", Reason.NON_FINITE, f"reading {name!r} is {v}"))
        elif v is None or type(v) in (bool, float, int):
            kept[name] = v
        else:
            bad.append(_field(f"readings.{name}", Reason.SCHEMA, f"{_show(v)} is not a number, a boolean or null"))
    status = doc.get("status")
    if isinstance(status, dict):
        good_status = {}
        for name, st in status.items():
            if isinstance(st, str) and _STATUS_RE.match(st) and _sensor_ok(name):
                good_status[name] = st
            else:
                bad.append(
                    _field(
                        f"status.{str(name)[:80]}",
                        Reason.SCHEMA,
                        f"{_show(st)} is not a status code name (Good…, Uncertain… or Bad…, e.g. BadSensorFailure)",
                    )
                )
        doc["status"] = good_status or None
    text = doc.get("text")
    if isinstance(text, dict):
        good_text = {}
        for name, t in text.items():
            if isinstance(t, str) and len(t) <= MAX_TEXT and _sensor_ok(name):
                good_text[name] = t
            else:
                shown = _show(t) if not isinstance(t, str) else f"text of {len(t)} characters"
                bad.append(
                    _field(
                        f"text.{str(name)[:80]}",
                        Reason.SCHEMA,
                        f"{shown} is not a text value (at most {MAX_TEXT} characters)",
                    )
                )
        doc["text"] = good_text or None
    if not bad:
        raise Rejected(Reason.SCHEMA, str(exc)) from None
    if not kept and not doc.get("text"):
        raise Rejected(bad[0].reason, f"no valid reading left: {bad[0].detail}", bad[0].field)
    doc["readings"] = kept
    try:
        return msgspec.json.decode(msgspec.json.encode(doc), type=Envelope)
    except msgspec.ValidationError as again:  # something besides the values is wrong too
        raise Rejected(Reason.SCHEMA, str(again)) from None


def _field(field: str, reason: Reason, why: str) -> FieldRejected:
    return FieldRejected(field, reason, f"{field}: {why}")


def _drop_bad_values(env: Envelope, bad: list[FieldRejected]) -> Envelope:
    """Remove non-finite values, values of nothing (null) with good quality, status of no reading."""
    status = env.status or {}
    kept: dict[str, Value] = {}
    for name, v in env.readings.items():
        if v is None:
            if env.quality_of(name) == "good":
                bad.append(
                    _field(
                        f"readings.{name}",
                        Reason.SCHEMA,
                        "null (no value) needs quality bad or uncertain, or a Bad/Uncertain status",
                    )
                )
                continue
        elif not isfinite(v):
            bad.append(_field(f"readings.{name}", Reason.NON_FINITE, f"reading {name!r} is {v}"))
            continue
        kept[name] = v
    orphans = [n for n in status if n not in env.readings]
    for name in orphans:
        bad.append(_field(f"status.{name}", Reason.SCHEMA, "a status for a reading the message does not carry"))
    if not kept and not env.text:
        first = bad[0]
        raise Rejected(
            first.reason,
            first.detail if len(env.readings) == 1 else f"no valid reading left: {first.detail}",
            first.field,
        )
    if len(kept) == len(env.readings) and not orphans:
        return env
    new_status = {n: s for n, s in status.items() if n in kept} or None
    return msgspec.structs.replace(env, readings=kept, status=new_status)


def encode(env: Envelope) -> bytes:
    """Serialise an envelope to its JSON wire form."""
    return _encoder.encode(env)
