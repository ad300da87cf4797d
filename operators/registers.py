"""Modbus register decoding/encoding and read planning (pure: no sockets).

A value is ``raw * scale + offset``; 32-bit types span two registers whose order is
``big`` (high word first, the Modbus convention) or ``little`` (low word first).

>>> f = RegisterField(("p", "flow"), unit_id=1, kind="input", address=4, type="float32", word_order="little")
>>> regs = encode(f, 12.5)
>>> decode(f, regs)
12.5
>>> g = RegisterField(("p", "temp"), 1, "input", 6, "int16", scale=0.1, offset=-40.0)
>>> encode(g, 25.0), round(decode(g, [650]), 6)
([650], 25.0)
>>> [(r.address, r.count) for r in plan_reads([f, g])]
[(4, 3)]
"""

from __future__ import annotations

import math
import struct
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


@dataclass(frozen=True, slots=True)
class RegisterField:
    """One parameter's place in a device's register map."""

    key: Hashable
    unit_id: int
    kind: str  # "holding" | "input"
    address: int
    type: str = "uint16"
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        return 1 if self.type in ("int16", "uint16") else 2


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read of ``count`` registers from ``address`` covering several fields."""

    unit_id: int
    kind: str
    address: int
    count: int
    fields: tuple[RegisterField, ...] = field(default=())


class EncodeError(ValueError):
    """A value that does not fit the register type (the reason goes into the command's ack)."""


def decode(f: RegisterField, registers: Sequence[int]) -> float:
    """Registers (exactly ``f.width`` of them) → engineering value."""
    regs = list(registers[: f.width])
    if f.width == 2 and f.word_order == "little":
        regs.reverse()
    raw = struct.unpack(">" + _FORMATS[f.type], struct.pack(f">{f.width}H", *regs))[0]
    return raw * f.scale + f.offset


def encode(f: RegisterField, value: float, *, saturate: bool = False) -> list[int]:
    """Engineering value → registers; out of range raises :class:`EncodeError` unless ``saturate``."""
    if not math.isfinite(value):
        raise EncodeError(f"{value} is not a finite number")
    raw: float = (value - f.offset) / f.scale
    if f.type != "float32":
        raw_int = round(raw)
        lo, hi = _RANGES[f.type]
        if not lo <= raw_int <= hi:
            if not saturate:
                raise EncodeError(
                    f"{value} is outside what {f.type} with scale {f.scale} and offset {f.offset} can hold "
                    f"({lo * f.scale + f.offset} … {hi * f.scale + f.offset})"
                )
            raw_int = min(max(raw_int, lo), hi)
        raw = raw_int
    regs = list(struct.unpack(f">{f.width}H", struct.pack(">" + _FORMATS[f.type], raw)))
    if f.width == 2 and f.word_order == "little":
        regs.reverse()
    return regs


def plan_reads(fields: Iterable[RegisterField], max_count: int = 125, max_gap: int = 0) -> list[ReadRequest]:
    """Group fields of the same unit and register kind into as few reads as possible.

    Fields are merged when the hole between them is at most ``max_gap`` registers and the
    read stays within ``max_count`` registers (125 is the protocol's limit).
    """
    ordered = sorted(fields, key=lambda f: (f.unit_id, f.kind, f.address))
    out: list[ReadRequest] = []
    cur: list[RegisterField] = []
    start = end = 0
    for f in ordered:
        if f.width > max_count:
            raise ValueError(f"{f.key}: {f.type} needs {f.width} registers > max_count {max_count}")
        same = bool(cur) and cur[0].unit_id == f.unit_id and cur[0].kind == f.kind
        if same and f.address - end <= max_gap and max(end, f.address + f.width) - start <= max_count:
            cur.append(f)
            end = max(end, f.address + f.width)
            continue
        if cur:
            out.append(ReadRequest(cur[0].unit_id, cur[0].kind, start, end - start, tuple(cur)))
        cur, start, end = [f], f.address, f.address + f.width
    if cur:
        out.append(ReadRequest(cur[0].unit_id, cur[0].kind, start, end - start, tuple(cur)))
    return out


def decode_response(req: ReadRequest, registers: Sequence[int]) -> list[tuple[RegisterField, float]]:
    """Values of every field of a read, from the registers it returned."""
    if len(registers) < req.count:
        raise ValueError(f"short response: {len(registers)} registers for a read of {req.count}")
    return [(f, decode(f, registers[f.address - req.address :])) for f in req.fields]
