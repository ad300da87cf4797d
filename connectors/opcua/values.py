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
