"""Discrete states sent as numbers (a running flag 0/1, a valve open/closed, a mode 0..3): context.

Scored as a level, every switch of a status is a large deviation. Sent as a boolean, the models
take it as operating-point context (:mod:`operators.ml.operating_point`): never scored, a switch
starts a settle period and each state has its own levels. Devices send such statuses as numbers
(a Modbus coil or an OPC-UA Int32 read as a number), so a sensor is taken for a *state* once it
has taken 2 distinct values, and every value it took is a whole number from -1 to ``values`` (4),
at most ``values`` of them distinct (a status counts from 0 or 1, a direction from -1; a level in
whole degrees or a register stepping from 0 to 1000 does not fit). From then on it is context like
a boolean. A state that later sends a value that does not fit (fractional, out of -1..``values``,
one distinct value too many: a quantised temperature that only read 0 and 1 °C during the warm-up)
is a level again and never a state again. Each change of
what is a state restarts the twin's scoring models (as a counter does: :mod:`operators.ml.counters`).
A state is not forecast, as a boolean is not (:class:`~operators.ml.twin_model.TwinModel` drops its
forecaster when it becomes one; a state revoked is forecast afresh); the failure history sees it as
sent (context of the failure features). Sensors only become states while
the twin learns (not in maintenance); a value first seen in maintenance counts once learning resumes.

``[ml.states]`` (:class:`~operators.ml.config.StatesConfig`) decides by name instead: a reading
matching a ``levels`` glob (or an operating-point ``context`` glob, which is context anyway, or a
counter glob) is never a state; one matching a ``sensors`` glob is a state from its first reading,
whatever its values (no restart, never revoked); ``detect = false`` takes no other sensor for a state.

>>> s = States()
>>> [s.apply({"running": float(t % 2), "temp": 60.5}) for t in range(3)]
[False, True, False]
>>> s.states, sorted(s.never)
({'running'}, ['temp'])
>>> s.apply({"running": 0.5})  # fractional: a level after all
True
>>> s.states, s.apply({"running": 1.0})
(set(), False)
>>> named = States()
>>> named.apply({"mode": 7.0, "t": 1.0}, config=StatesConfig(detect=False, sensors=("MODE",))), named.states
(False, {'mode'})
"""

from __future__ import annotations

from operators.ml.config import StatesConfig
from operators.ml.counters import matches
from operators.pickled import PickledBySlots

LOWEST = -1.0  # no state value is below this (a direction: -1/0/1)
DEFAULT = StatesConfig()


class States(PickledBySlots):
    """Per sensor: the distinct values of candidates and detected states; which are states. Picklable."""

    __slots__ = ("_values", "never", "states")

    def __init__(self) -> None:
        self._values: dict[str, set[float]] = {}  # candidates and detected states -> their distinct values
        self.states: set[str] = set()
        self.never: set[str] = set()  # took a value no state takes, or a level by name: never a state

    def apply(
        self,
        readings: dict[str, float],
        learn: bool = True,
        config: StatesConfig = DEFAULT,
        context: tuple[str, ...] = (),
        counters: tuple[str, ...] = (),
    ) -> bool:
        """Follow the readings' values; True when the set of states changed (the scoring models must
        start afresh). ``learn`` False (maintenance): no sensor becomes a state (a state still stops
        being one). ``context``, ``counters``: globs of context readings and of named counters (never states)."""
        changed = False
        values, never = self._values, self.never
        for name, v in readings.items():
            if name in never or v.__class__ is bool or v != v:
                continue
            seen = values.get(name)
            if seen is None:
                if name in self.states or self._first(name, config, context, counters):  # named, or a level by name
                    continue
                seen = values[name] = set()
            elif v in seen:
                continue
            if not float(v).is_integer() or not LOWEST <= v <= config.values or len(seen) >= config.values:
                del values[name]
                never.add(name)
                if name in self.states:  # a level after all
                    self.states.discard(name)
                    changed = True
                continue
            if not learn and name not in self.states:
                continue  # counted once the twin learns again
            seen.add(float(v))
            if name not in self.states and len(seen) >= 2:
                self.states.add(name)
                changed = True
        return changed

    def _first(self, name: str, config: StatesConfig, context: tuple[str, ...], counters: tuple[str, ...]) -> bool:
        """Classify a sensor at its first reading by name; True when it is no candidate (a level,
        or a named state)."""
        if matches(name, config.levels) or matches(name, context) or matches(name, counters):
            self.never.add(name)
            return True
        if config.sensors and matches(name, config.sensors):
            self.states.add(name)
            return True
        if not config.detect:
            self.never.add(name)
            return True
        return False


__all__ = ["LOWEST", "States"]
