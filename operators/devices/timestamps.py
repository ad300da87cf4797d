"""The timestamp policy of the MQTT bridges (mapped, mapping-free and Sparkplug): one reading of
a device's ``ts`` for all of them, chosen by ``ts_format``:

* ``auto`` (default): an ISO 8601 text **with a time zone** (``2026-11-25T08:00:00Z``,
  ``…+01:00``), or an epoch number — or a text holding one — whose unit follows from its size:
  below 10¹¹ seconds, below 10¹⁴ milliseconds, below 10¹⁷ microseconds (so seconds are read
  until the year 5138, milliseconds from 1973, microseconds from 1973).
* ``iso``: ISO 8601 with a time zone only; ``epoch_s``, ``epoch_ms``, ``epoch_us``: an epoch
  number (or a text holding one) in that unit only.

A timestamp that does not fit is never replaced by the receive time: :func:`parse_device_ts`
raises :class:`~operators.records.envelope.Rejected` with reason ``ts_invalid`` and the bridge
dead-letters the message. A payload without a timestamp is stamped with the receive time.

>>> parse_device_ts("2026-01-01T00:00:00Z").isoformat()
'2026-01-01T00:00:00+00:00'
>>> [parse_device_ts(v).isoformat() for v in (1767225600, 1767225600000, "1767225600000000")]
['2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00']
>>> parse_device_ts("2026-01-01T00:00:00")
Traceback (most recent call last):
...
operators.records.envelope.Rejected: ts_invalid: ts '2026-01-01T00:00:00' has no time zone (add Z or +hh:mm)
>>> parse_device_ts(1767225600, "epoch_ms").isoformat()  # an explicit unit is believed
'1970-01-21T10:53:45.600000+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from operators.records.envelope import Reason, Rejected

TsFormat = Literal["auto", "iso", "epoch_s", "epoch_ms", "epoch_us"]
_DIVISORS = {"epoch_s": 1, "epoch_ms": 1_000, "epoch_us": 1_000_000}


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _bad(value: object, why: str) -> Rejected:
    return Rejected(Reason.TS_INVALID, f"ts {_show(value)} {why}", "ts")


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text and text.replace(".", "", 1).isdigit():
            return float(text)
    return None


def parse_device_ts(value: object, fmt: TsFormat = "auto") -> datetime:
    """A device timestamp → aware datetime under the policy ``fmt``; :class:`Rejected` otherwise."""
    number = _number(value)
    if number is not None and fmt != "iso":
        if fmt == "auto":
            if number < 1e11:
                divisor = 1
            elif number < 1e14:
                divisor = 1_000
            elif number < 1e17:
                divisor = 1_000_000
            else:
                raise _bad(value, "is too large for epoch seconds, milliseconds or microseconds")
        else:
            divisor = _DIVISORS[fmt]
        try:
            return datetime.fromtimestamp(number / divisor, UTC)
        except (OverflowError, OSError, ValueError):
            raise _bad(value, f"is out of range as {fmt}") from None
    if isinstance(value, str) and fmt in ("auto", "iso"):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise _bad(value, "is not ISO 8601 (e.g. 2026-11-25T08:00:00.123Z) nor an epoch number") from None
        if ts.tzinfo is None:
            raise _bad(value, "has no time zone (add Z or +hh:mm)")
        return ts
    expected = {"iso": "an ISO 8601 text with a time zone"}.get(fmt, f"a number of {fmt} (ts_format)")
    if fmt == "auto":
        expected = "ISO 8601 with a time zone or an epoch number"
    raise _bad(value, f"is not {expected}")
