"""Commands to devices (``twin.commands``) and their acknowledgements (``twin.acks``).

Plain Python: decoding, the checks a bridge makes before touching a device, and the ack record.
Every command gets exactly one ack: ``applied``, ``rejected`` (never sent to the device, with the
reason), ``failed`` (the device write failed), ``expired`` (deadline passed before it was applied) or
``superseded`` (a newer command for the same twin and parameter came before it was written: only the
newest is written, :func:`superseded_by`).

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> cmd = Command("c1", "pump-1", "temp_c", 20.0, issued_at=now, deadline=now + timedelta(seconds=30))
>>> precheck(cmd, {"speed_sp_rpm": True, "temp_c": False}, now).status
'rejected'
>>> precheck(cmd, {"temp_c": True}, now + timedelta(minutes=1)).status
'expired'
>>> precheck(cmd, {"temp_c": True}, now) is None
True
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec

Status = Literal["applied", "rejected", "failed", "expired", "superseded"]


class Command(msgspec.Struct, frozen=True):
    command_id: str
    twin_id: str
    parameter: str
    # A number, or a boolean for an on/off parameter (an OPC-UA Boolean, a Modbus coil).
    value: float | bool
    issued_at: datetime
    deadline: datetime | None = None


class Ack(msgspec.Struct, frozen=True):
    """The one ``twin.acks`` record (key = twin_id): the device's answer to a command.

    The bridges write every field (:func:`make_ack`); a third-party device may send only
    ``command_id`` and ``status`` (the twin flow takes the twin from the Kafka key and the time
    from the record's Kafka timestamp)."""

    command_id: str
    status: Status
    error: str | None = None
    applied_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    twin_id: str = ""
    parameter: str = ""
    # Which bridge answered (opcua/mqtt/modbus).
    source: str = ""


class Refused(ValueError):
    """The bridge refuses a command before writing (the ack says ``rejected`` with this reason)."""


class BadCommand(ValueError):
    """A record on twin.commands that is not a command."""


_decoder = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder()


def new_command(
    twin_id: str,
    parameter: str,
    value: float | bool,
    *,
    ttl: timedelta = timedelta(seconds=30),
    now: datetime | None = None,
) -> Command:
    now = now or datetime.now(UTC)
    value = value if isinstance(value, bool) else float(value)
    return Command(uuid.uuid4().hex, twin_id, parameter, value, issued_at=now, deadline=now + ttl)


def parse_value(text: str) -> float | bool:
    """A command or desired value typed by a user: ``true``/``false`` (also on/off) or a finite number;
    :class:`ValueError` otherwise (``nan``, ``inf`` and ``1e999`` are no setpoints).

    >>> parse_value("true"), parse_value("OFF"), parse_value("1200")
    (True, False, 1200.0)
    >>> parse_value("nan")
    Traceback (most recent call last):
    ...
    ValueError: 'nan' is not a finite number
    """
    word = text.strip().lower()
    if word in ("true", "on"):
        return True
    if word in ("false", "off"):
        return False
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def encode_command(cmd: Command) -> bytes:
    return _encoder.encode(cmd)


def decode_command(raw: bytes | None) -> Command:
    if raw is None:
        raise BadCommand("empty record")
    try:
        cmd = _decoder.decode(raw)
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise BadCommand(str(exc)) from None
    if cmd.issued_at.tzinfo is None or (cmd.deadline is not None and cmd.deadline.tzinfo is None):
        raise BadCommand("issued_at and deadline need a time zone (e.g. ...Z)")
    return cmd


def peek_ids(raw: bytes | None) -> tuple[str | None, str | None]:
    """Best effort (command_id, twin_id) of a malformed record, so it can still be acknowledged."""
    try:
        obj = msgspec.json.decode(raw or b"")
    except msgspec.DecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    cid, twin = obj.get("command_id"), obj.get("twin_id")
    return (cid if isinstance(cid, str) else None, twin if isinstance(twin, str) else None)


def make_ack(cmd: Command, status: Status, error: str | None = None, *, source: str = "", now=None) -> Ack:
    return Ack(
        cmd.command_id,
        status,
        error,
        now or datetime.now(UTC),
        twin_id=cmd.twin_id,
        parameter=cmd.parameter,
        source=source,
    )


def encode_ack(ack: Ack) -> bytes:
    return _encoder.encode(ack)


def decode_ack(raw: bytes) -> Ack:
    return msgspec.json.decode(raw, type=Ack)


def superseded_by(commands: Sequence[Command | None]) -> dict[int, Command]:
    """Index → the newest later command for the same twin and parameter, for every command in
    ``commands`` (in topic order; None: not a command of this bridge) that a later one replaces.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> cmds = [Command(c, "p1", p, v, t) for c, p, v in [("a", "sp", 1), ("b", "mode", 2), ("c", "sp", 3)]]
    >>> {i: c.command_id for i, c in superseded_by([*cmds, None]).items()}
    {0: 'c'}
    """
    newest: dict[tuple[str, str], Command] = {}
    out: dict[int, Command] = {}
    for i in range(len(commands) - 1, -1, -1):
        cmd = commands[i]
        if cmd is None:
            continue
        key = (cmd.twin_id, cmd.parameter)
        later = newest.get(key)
        if later is None:
            newest[key] = cmd
        else:
            out[i] = later
    return out


def precheck(cmd: Command, writable: Mapping[str, bool], now: datetime, *, source: str = "") -> Ack | None:
    """The ack when the command must not reach the device (``writable``: parameter → writable?)."""
    if cmd.deadline is not None and now > cmd.deadline:
        return make_ack(cmd, "expired", f"deadline {cmd.deadline.isoformat()} passed", source=source, now=now)
    if cmd.parameter not in writable:
        known = ", ".join(sorted(writable)) or "none"
        return make_ack(
            cmd,
            "rejected",
            f"twin {cmd.twin_id!r} has no parameter {cmd.parameter!r} (known: {known})",
            source=source,
            now=now,
        )
    if not writable[cmd.parameter]:
        return make_ack(
            cmd,
            "rejected",
            f"parameter {cmd.parameter!r} of twin {cmd.twin_id!r} is read-only (writable = false in the mapping)",
            source=source,
            now=now,
        )
    if not math.isfinite(cmd.value):
        return make_ack(cmd, "rejected", f"value {cmd.value} is not a finite number", source=source, now=now)
    return None
