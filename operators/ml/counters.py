"""Counters (energy in kWh, operating hours, pieces): scored as their rate, not their level.

A counter's level only grows, so against any reference it drifts away for ever: the health index
falls and a ``condition`` alert opens however well the machine runs, and a counter that wraps (a
16-bit register: 65535 → 0) or is reset looks like a huge fault. What tells about the machine is
how fast it counts. A sensor is taken for a counter once it has risen ``INCREASES`` (20) times
since its first reading or its last *reset* (a fall to below half of its value: a wrap, a reset to
0), never went down otherwise and never below 0 (a sensor that toggles between 0 and 1 is none).
From then on the models score its rate per second, ``Δvalue / Δt`` (the sensor keeps its name):
a reset, a wrap or a repeated timestamp carries the last rate forward. A counter that goes down by
less than half of its value is no counter (a quantised temperature rising for minutes looks like
one): it is scored as a level again and never taken for a counter again. Each change of what is a
counter restarts the twin's scoring models (as a new sensor does); forecasts and the failure
history see the readings as sent. Sensors only become counters while the twin learns (not in
maintenance). A wear indicator that only ever grows is a counter too: its rate is scored.

>>> c = Counters()
>>> [sorted(c.apply(float(t), {"kwh": 10.0 + t, "temp": 20.0})[0].items()) for t in range(3)][-1]
[('kwh', 12.0), ('temp', 20.0)]
>>> out = [c.apply(float(t), {"kwh": 10.0 + 2 * t, "temp": 20.0}) for t in range(3, 30)]
>>> [changed for _, changed in out].count(True), out[-1][0]
(1, {'kwh': 2.0, 'temp': 20.0})
>>> c.apply(30.0, {"kwh": 1.0, "temp": 20.0})[0]  # reset: the last rate carried forward
{'kwh': 2.0, 'temp': 20.0}
>>> c.apply(31.0, {"kwh": 0.5, "temp": 20.0})  # went down, not by a reset: no counter
({'kwh': 0.5, 'temp': 20.0}, True)
"""

from __future__ import annotations

INCREASES = 20  # rises (and no fall but resets) that make a sensor a counter
RESET_SHARE = 0.5  # a fall to below this share of the last value is a reset (a wrap, a reset to 0)


class Counters:
    """Per sensor: how it moved so far, and the last value, time and rate of the counters. Picklable."""

    __slots__ = ("_last", "_rate", "_rises", "counters", "never")

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}  # sensor -> (value, t) of its last reading
        self._rises: dict[str, int] = {}  # candidates: rises so far (a sensor that fell is in ``never``)
        self._rate: dict[str, float] = {}  # a counter's last rate
        self.counters: set[str] = set()
        self.never: set[str] = set()  # fell without a reset, or went below 0: not a counter

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def apply(self, t: float, readings: dict[str, float], learn: bool = True) -> tuple[dict[str, float], bool]:
        """The readings with each counter's value replaced by its rate per second (``t`` in seconds),
        and whether the set of counters changed (the models must start afresh). ``learn`` False
        (maintenance): no sensor becomes a counter (a counter that falls is still none)."""
        changed = False
        out = readings
        last, never = self._last, self.never
        for name, v in readings.items():
            if name in never or v.__class__ is bool or v != v:
                continue
            prev = last.get(name)
            last[name] = (v, t)
            if name in self.counters:
                if out is readings:
                    out = dict(readings)
                out[name] = self._counted(name, v, t, prev)
                if name not in self.counters:  # fell: no counter after all
                    out[name] = v
                    changed = True
                continue
            if v < 0.0:
                never.add(name)
                self._rises.pop(name, None)
                continue
            if prev is None:
                continue
            if v > prev[0] and learn:
                rises = self._rises.get(name, 0) + 1
                self._rises[name] = rises
                if rises >= INCREASES and v > 0.0:
                    self.counters.add(name)
                    self._rate[name] = (v - prev[0]) / (t - prev[1]) if t > prev[1] else 0.0
                    if out is readings:
                        out = dict(readings)
                    out[name] = self._rate[name]
                    changed = True
            elif v < prev[0]:
                if v >= RESET_SHARE * prev[0]:
                    never.add(name)
                    self._rises.pop(name, None)
                else:  # a reset before it counted as a counter: it counts again from here
                    self._rises[name] = 0
        return out, changed

    def _counted(self, name: str, v: float, t: float, prev: tuple[float, float] | None) -> float:
        """A counter's rate; a reset or a repeated time carries the last rate forward."""
        rate = self._rate.get(name, 0.0)
        if prev is None:
            return rate
        pv, pt = prev
        if v < pv:
            if v >= RESET_SHARE * pv or v < 0.0:  # a fall that is no reset: not a counter
                self.counters.discard(name)
                self.never.add(name)
            return rate
        if t > pt:
            rate = self._rate[name] = (v - pv) / (t - pt)
        return rate


__all__ = ["INCREASES", "RESET_SHARE", "Counters"]
