"""Modbus register decoding/encoding and read planning (pure: no sockets).

A number is ``raw * scale + offset``. Multi-register values (32/64-bit integers and floats,
strings) span several 16-bit registers: ``word_order`` gives their order (``big`` = high word
first, the Modbus convention) and ``byte_order`` the order of the two bytes inside each register.
Coils and discrete inputs are bits (booleans); ``bit``/``bits`` select a bit field of an integer
register value (one bit → boolean). ``min``/``max`` mark nonsense decodes (:func:`plausible`).

>>> f = RegisterField(("p", "flow"), unit_id=1, kind="input", address=4, type="float32", word_order="little")
>>> regs = encode(f, 12.5)
>>> decode(f, regs)
12.5
>>> g = RegisterField(("p", "temp"), 1, "input", 6, "int16", scale=0.1, offset=-40.0)
>>> encode(g, 25.0), round(decode(g, [650]), 6)
([650], 25.0)
>>> [(r.address, r.count) for r in plan_reads([f, g])]
[(4, 3)]
>>> decode(RegisterField("s", 1, "holding", 0, "string", length=3), [0x4142, 0x4344, 0x0000])
'ABCD'
>>> decode(RegisterField("b", 1, "holding", 0, "uint16", bit=3), [0b1000])
True
"""

from __future__ import annotations

import math
import struct
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

_FORMATS = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
    "float32": "f", "float64": "d",
}  # fmt: skip
_WIDTHS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}
_RANGES = {t: (-(2 ** (16 * w - 1)), 2 ** (16 * w - 1) - 1) for t, w in _WIDTHS.items() if t.startswith("int")}
_RANGES |= {t: (0, 2 ** (16 * w) - 1) for t, w in _WIDTHS.items() if t.startswith("uint")}
BIT_KINDS = ("coil", "discrete")
Value = float | bool | str


@dataclass(frozen=True, slots=True)
class RegisterField:
    """One parameter's place in a device's register map."""

    key: Hashable
    unit_id: int
    kind: str  # "holding" | "input" | "coil" | "discrete"
    address: int
    type: str = "uint16"  # "bool" for coils and discrete inputs
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    byte_order: str = "big"
    length: int | None = None  # strings: registers
    bit: int | None = None
    bits: int = 1
    min: float | None = None
    max: float | None = None
    write_function: int = 16

    @property
    def width(self) -> int:
        """Registers (bits for coils/discrete inputs) the value occupies."""
        if self.kind in BIT_KINDS:
            return 1
        if self.type == "string":
            return self.length or 1
        return _WIDTHS[self.type]


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read of ``count`` registers (or bits) from ``address`` covering several fields."""

    unit_id: int
    kind: str
    address: int
    count: int
    fields: tuple[RegisterField, ...] = field(default=())


def field_of(twin_id: str, name: str, unit_id: int, p: Any) -> RegisterField:
    """The codec's view of a mapping file's Modbus parameter (``connectors.bridges.mapping.schema.ModbusParam``)."""
    return RegisterField(
        (twin_id, name),
        unit_id,
        p.kind,
        p.address,
        p.data_type,
        p.word_order,
        p.scale,
        p.offset,
        byte_order=p.byte_order,
        length=p.length,
        bit=p.bit,
        bits=p.bits,
        min=p.min,
        max=p.max,
        write_function=p.write_function,
    )


class EncodeError(ValueError):
    """A value that does not fit the register type (the reason goes into the command's ack)."""


def _raw_bytes(f: RegisterField, registers: Sequence[int]) -> bytes:
    regs = list(registers[: f.width])
    if f.word_order == "little":
        regs.reverse()
    data = struct.pack(f">{len(regs)}H", *regs)
    if f.byte_order == "little":
        data = bytes(b for i in range(0, len(data), 2) for b in (data[i + 1], data[i]))
    return data


def decode(f: RegisterField, registers: Sequence[int | bool]) -> Value:
    """Registers (exactly ``f.width`` of them) or a bit → engineering value."""
    if f.kind in BIT_KINDS:
        return bool(registers[0])
    data = _raw_bytes(f, registers)  # type: ignore[arg-type]
    if f.type == "string":
        return data.split(b"\0", 1)[0].decode("latin-1").rstrip()
    raw = struct.unpack(">" + _FORMATS[f.type], data)[0]
    if f.bit is not None:
        raw = (raw >> f.bit) & ((1 << f.bits) - 1)
        if f.bits == 1:
            return bool(raw)
    return raw * f.scale + f.offset


def plausible(f: RegisterField, value: Value) -> bool:
    """False when a decoded number is outside the field's ``min``/``max`` or not finite."""
    if value.__class__ is not float:
        return True
    if not math.isfinite(value):  # type: ignore[arg-type]
        return False
    return (f.min is None or value >= f.min) and (f.max is None or value <= f.max)  # type: ignore[operator]


def encode(f: RegisterField, value: Value, *, saturate: bool = False) -> list[int]:
    """Engineering value → registers (``[0|1]`` for a coil); a value out of range, or between two steps
    of an integer type (3.5 for a plain int16), raises :class:`EncodeError` unless ``saturate`` (then
    it is clamped and rounded)."""
    if f.kind in BIT_KINDS:
        if isinstance(value, bool) or value in (0, 1):
            return [int(bool(value))]
        raise EncodeError(f"{value} is not a boolean (a coil takes true/false or 1/0)")
    if f.type == "string":
        if not isinstance(value, str):
            raise EncodeError(f"{value!r} is not text")
        data = value.encode("latin-1", "replace")
        if len(data) > 2 * f.width:
            raise EncodeError(f"{value!r} is longer than {2 * f.width} characters")
        return _registers(f, data.ljust(2 * f.width, b"\0"))
    if isinstance(value, str) or not math.isfinite(value):
        raise EncodeError(f"{value} is not a finite number")
    if f.bit is not None:
        raise EncodeError("a bit field is read-only (writing it would overwrite the register's other bits)")
    raw: float = (value - f.offset) / f.scale
    if not f.type.startswith("float"):
        raw_int = round(raw)
        if not saturate and not math.isclose(raw, raw_int, rel_tol=1e-9, abs_tol=1e-6):
            step = (
                "a whole number"
                if (f.scale, f.offset) == (1.0, 0.0)
                else f"offset {f.offset} + a multiple of {f.scale}"
            )
            raise EncodeError(f"{value} is not {step} ({f.type} with scale {f.scale} and offset {f.offset})")
        lo, hi = _RANGES[f.type]
        if not lo <= raw_int <= hi:
            if not saturate:
                raise EncodeError(
                    f"{value} is outside what {f.type} with scale {f.scale} and offset {f.offset} can hold "
                    f"({lo * f.scale + f.offset} … {hi * f.scale + f.offset})"
                )
            raw_int = min(max(raw_int, lo), hi)
        raw = raw_int
    return _registers(f, struct.pack(">" + _FORMATS[f.type], raw))


def _registers(f: RegisterField, data: bytes) -> list[int]:
    if f.byte_order == "little":
        data = bytes(b for i in range(0, len(data), 2) for b in (data[i + 1], data[i]))
    regs = list(struct.unpack(f">{len(data) // 2}H", data))
    if f.word_order == "little":
        regs.reverse()
    return regs


def plan_reads(fields: Iterable[RegisterField], max_count: int = 125, max_gap: int = 0) -> list[ReadRequest]:
    """Group fields of the same unit and register kind into as few reads as possible.

    Fields are merged when the hole between them is at most ``max_gap`` registers and the
    read stays within ``max_count`` registers (125 is the protocol's limit; reads of coils and
    discrete inputs take up to 16 × that many bits). Bit fields of one register share its read.
    """
    ordered = sorted(fields, key=lambda f: (f.unit_id, f.kind, f.address))
    out: list[ReadRequest] = []
    cur: list[RegisterField] = []
    start = end = 0
    for f in ordered:
        limit = max_count * 16 if f.kind in BIT_KINDS else max_count
        if f.width > limit:
            raise ValueError(f"{f.key}: {f.type} needs {f.width} registers > max_count {max_count}")
        same = bool(cur) and cur[0].unit_id == f.unit_id and cur[0].kind == f.kind
        if same and f.address - end <= max_gap and max(end, f.address + f.width) - start <= limit:
            cur.append(f)
            end = max(end, f.address + f.width)
            continue
        if cur:
            out.append(ReadRequest(cur[0].unit_id, cur[0].kind, start, end - start, tuple(cur)))
        cur, start, end = [f], f.address, f.address + f.width
    if cur:
        out.append(ReadRequest(cur[0].unit_id, cur[0].kind, start, end - start, tuple(cur)))
    return out


def decode_response(
    req: ReadRequest, registers: Sequence[int | bool]
) -> tuple[list[tuple[RegisterField, Value]], list[RegisterField]]:
    """Values of the fields a read's response covers, and the fields it does not (a short reply:
    some devices answer a read past their map with fewer registers than asked)."""
    got = len(registers)
    values, missing = [], []
    for f in req.fields:
        lo = f.address - req.address
        if lo + f.width > got:
            missing.append(f)
        else:
            values.append((f, decode(f, registers[lo : lo + f.width])))
    return values, missing
