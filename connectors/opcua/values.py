"""OPC-UA status codes and values in twinflow's terms: quality, status names, queue overflow, write casts.

>>> quality_of(ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)), quality_of(None)
('uncertain', 'good')
"""

from __future__ import annotations

from asyncua import ua

# A setpoint's Python value cast to the node's data type (numbers and booleans only).
WRITE_CASTS = {
    ua.VariantType.Double: float,
    ua.VariantType.Float: float,
    ua.VariantType.Int16: round,
    ua.VariantType.UInt16: round,
    ua.VariantType.Int32: round,
    ua.VariantType.UInt32: round,
    ua.VariantType.Int64: round,
    ua.VariantType.UInt64: round,
    ua.VariantType.Byte: round,
    ua.VariantType.SByte: round,
    ua.VariantType.Boolean: bool,
}

# What each integer type holds, and the largest Float (IEEE single precision).
_INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT_MAX = 3.4028234663852886e38

# Bad status codes of a write that no retry changes: the node refuses this value or this client.
REFUSING_WRITE = frozenset(
    {
        "BadTypeMismatch",
        "BadOutOfRange",
        "BadNotWritable",
        "BadUserAccessDenied",
        "BadWriteNotSupported",
        "BadNodeIdUnknown",
        "BadAttributeIdInvalid",
        "BadIndexRangeInvalid",
    }
)


def write_value(vtype: ua.VariantType, value: float | bool) -> int | float | bool:
    """``value`` as the node's data type takes it; :class:`ValueError` (the reason) when it does not fit:
    a fraction or a number outside the range of an integer type, a number beyond a Float, a number
    other than 0/1 for a Boolean. A non-numeric type is a :class:`KeyError`.

    >>> write_value(ua.VariantType.Int16, 7.0), write_value(ua.VariantType.Boolean, 1)
    (7, True)
    >>> write_value(ua.VariantType.Int16, 3.5)
    Traceback (most recent call last):
    ...
    ValueError: 3.5 is not a whole number
    >>> write_value(ua.VariantType.UInt16, -1.0)
    Traceback (most recent call last):
    ...
    ValueError: -1.0 is outside UInt16 (0 … 65535)
    """
    cast = WRITE_CASTS[vtype]
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise ValueError(f"{value} is not a boolean (true/false or 1/0)")
    if isinstance(value, bool):
        value = float(value)
    rng = _INT_RANGES.get(vtype)
    if rng is not None:
        if value != int(value):
            raise ValueError(f"{value} is not a whole number")
        if not rng[0] <= int(value) <= rng[1]:
            raise ValueError(f"{value} is outside {vtype.name} ({rng[0]} … {rng[1]})")
    elif vtype is ua.VariantType.Float and abs(value) > _FLOAT_MAX:
        raise ValueError(f"{value} is outside Float (±{_FLOAT_MAX:.7g})")
    return cast(value)


# StatusCode info bits (OPC-UA Part 4, 7.39): InfoType = DataValue (bit 10) with the Overflow bit (7): the
# server's queue for this monitored item was full and it discarded values before this one.
_OVERFLOW = 0x0400 | 0x0080


def overflowed(status: ua.StatusCode | None) -> bool:
    """True when the server says it discarded values of this item before this one (queue overflow).

    >>> overflowed(ua.StatusCode(0x0480)), overflowed(ua.StatusCode(0))
    (True, False)
    """
    return status is not None and status.value & _OVERFLOW == _OVERFLOW


def quality_of(status: ua.StatusCode | None) -> str:
    if status is None or status.is_good():
        return "good"
    return "uncertain" if status.is_uncertain() else "bad"


def status_name(status: ua.StatusCode) -> str:
    """The status code's name without its info bits.

    >>> status_name(ua.StatusCode(ua.StatusCodes.BadSensorFailure | 0x0480))
    'BadSensorFailure'
    """
    name = ua.StatusCode(status.value & 0xFFFF0000).name
    return name if name and name[0] in "GUB" else ("Bad" if status.is_bad() else "Uncertain")
