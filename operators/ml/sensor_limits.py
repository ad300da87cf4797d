"""Operating limits per sensor, and when a forecast says a reading will cross one.

A limit rule names a sensor, the twins it applies to (a glob on twin_id) and a ``low`` and/or
``high`` limit — typically the alarm limits of the plant (e.g. ISO 10816 vibration zones, a
bearing temperature). The models flow attaches the limit to every forecast of that sensor and
the predicted crossing time (``breach_at``); the alert lifecycle opens a ``forecast_breach``
alert when the crossing is near (``alerts.rules.breach_horizon_s``).

>>> from datetime import UTC, datetime, timedelta
>>> rules = (SensorLimit(sensor="temp_c", high=90.0, twins="compressor-*"),)
>>> limit = limit_for(rules, "compressor-002", "temp_c")
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> breach_at(limit, now=80.0, predicted=100.0, ts=t0, target_ts=t0 + timedelta(seconds=10))
(90.0, datetime.datetime(2026, 1, 1, 0, 0, 5, tzinfo=datetime.timezone.utc))
>>> breach_at(limit, now=60.0, predicted=62.0, ts=t0, target_ts=t0 + timedelta(seconds=10))
(90.0, None)
>>> limit_for(rules, "pump-001", "temp_c") is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from pydantic import model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from operators.strict import STRICT


@pydantic_dataclass(frozen=True, config=STRICT)
class SensorLimit:
    """``[[ml.limits]]``: sensor = "temp_c", high = 90.0, twins = "compressor-*" (default all)."""

    sensor: str  # the sensor name
    high: float | None = None  # the upper limit (set high, low or both)
    low: float | None = None  # the lower limit
    twins: str = "*"  # twin_id glob the rule applies to (the first matching rule per sensor wins)

    @model_validator(mode="after")
    def _check(self) -> SensorLimit:
        if self.high is None and self.low is None:
            raise ValueError(f"limit for sensor {self.sensor!r}: set `high`, `low` or both")
        if self.high is not None and self.low is not None and self.low >= self.high:
            raise ValueError(f"limit for sensor {self.sensor!r}: low {self.low} must be below high {self.high}")
        return self


def limit_for(rules: tuple[SensorLimit, ...], twin_id: str, sensor: str) -> SensorLimit | None:
    """The first rule for this sensor whose ``twins`` glob matches ``twin_id``."""
    for rule in rules:
        if rule.sensor == sensor and fnmatchcase(twin_id, rule.twins):
            return rule
    return None


@dataclass(frozen=True, slots=True)
class _Crossing:
    limit: float
    frac: float  # 0 = now, 1 = at the forecast's target time


def _crossing(limit: SensorLimit, now: float, predicted: float) -> _Crossing | None:
    """Where between now (0) and the target time (1) the straight line now → predicted leaves the band."""
    found: list[_Crossing] = []
    if limit.high is not None:
        if now >= limit.high:
            found.append(_Crossing(limit.high, 0.0))
        elif predicted >= limit.high:
            found.append(_Crossing(limit.high, (limit.high - now) / (predicted - now)))
    if limit.low is not None:
        if now <= limit.low:
            found.append(_Crossing(limit.low, 0.0))
        elif predicted <= limit.low:
            found.append(_Crossing(limit.low, (now - limit.low) / (now - predicted)))
    return min(found, key=lambda c: c.frac) if found else None


def breach_at(
    limit: SensorLimit, *, now: float, predicted: float, ts: datetime, target_ts: datetime
) -> tuple[float, datetime | None]:
    """(the limit the forecast is judged against, when it is crossed within the horizon or None).

    Only the forecast's own horizon is used (no extrapolation beyond what the model predicts):
    a reading already outside the band is a breach now; otherwise the crossing time is
    interpolated between the current value and the forecast.
    """
    hit = _crossing(limit, now, predicted)
    if hit is None:
        reference = limit.high if limit.high is not None else limit.low
        assert reference is not None
        if limit.high is not None and limit.low is not None:  # report the nearer one
            reference = limit.high if abs(limit.high - predicted) <= abs(predicted - limit.low) else limit.low
        return reference, None
    return hit.limit, ts + (target_ts - ts) * hit.frac
