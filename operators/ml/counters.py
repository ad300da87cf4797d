"""Counters (energy in kWh, operating hours, pieces): scored as their rate, not their level.

A counter's level only grows, so against any reference it drifts away for ever: the health index
falls and a ``condition`` alert opens however well the machine runs, and a counter that wraps (a
16-bit register: 65535 → 0) or is reset looks like a huge fault. What tells about the machine is
how fast it counts. A sensor is taken for a counter once it has risen ``rises`` (20) times since its
first reading or its last *reset* (a fall to below half of its value: a wrap, a reset to 0), never
went down otherwise and never below 0 (a sensor that toggles between 0 and 1 is none).
From then on the models score its rate per second (the sensor keeps its name). At a *step* (a
reading above the one before) the rate is the increment over the time since the value it left was
first read: ``Δvalue / Δt`` for a counter that steps at every reading, and for one coarse for the
sample rate (a 1-kWh register read every second steps every few hundred readings) its true mean
rate over that interval, not 0 with a spike per step. Between steps the rate is held, but never
above the last increment over the time since the last step (what a still unchanged register
allows): a machine that stops shows its rate falling. A coarse counter's rate is measured once per
step, so it moves only when a step's rate or that bound differs from it by more than
``COARSE_BAND`` (10 %): each small change of a rate constant for hundreds of readings would be a
novelty episode of its own (a counter that steps at every reading is never held). A reset, a wrap
or a repeated timestamp carries the last rate forward (a reset's reading starts the next interval).
A counter that goes down by less than half of its value is no counter (a quantised temperature
rising for minutes looks like one): it is scored as a level again and never taken for a counter
again. Each change of what is a counter restarts the twin's scoring models (as a new sensor does);
forecasts and the failure history see the readings as sent. Sensors only become counters while the
twin learns (not in maintenance). A wear indicator that only ever grows is a counter too: its rate
is scored. Detection needs ``rises`` steps however long they take: a coarse counter (a step per
500 s) is scored as a level for its first ``rises`` steps (a novelty episode per step). Its values
are those of a whole-degree temperature drifting up, so it is not taken sooner: name it.

``[ml.counters]`` (:class:`~operators.ml.config.CountersConfig`) decides by name instead: a reading
matching a ``levels`` glob (or an operating-point ``context`` glob) is never a counter; one matching
a ``sensors`` glob is a counter from its first reading (any fall is a reset, it is never revoked;
the first reading has no rate yet: :meth:`Counters.apply` returns None and that sample is not
scored; no restart later, but at the first step of one that did not step at its second reading: it
was scored at 0 until then); ``detect = false`` takes no other sensor for a counter. Names are
classified at their first reading.

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
>>> named, cfg = Counters(), CountersConfig(sensors=("*_kwh",), levels=("temp*",))
>>> named.apply(0.0, {"e_kwh": 5.0, "temp": 20.0}, config=cfg)  # no rate yet: not scored
(None, False)
>>> named.apply(2.0, {"e_kwh": 6.0, "temp": 21.0}, config=cfg)
({'e_kwh': 0.5, 'temp': 21.0}, False)
>>> named.apply(3.0, {"e_kwh": 5.9, "temp": 22.0}, config=cfg)  # any fall is a reset: the rate carried
({'e_kwh': 0.5, 'temp': 22.0}, False)
>>> coarse = Counters()  # 1 kWh every 50 s: its mean rate, held between steps
>>> rates = [coarse.apply(float(t), {"e_kwh": 100.0 + t // 50}, config=cfg) for t in range(200)]
>>> rates[49], rates[50], sorted({r["e_kwh"] for r, _ in rates[50:]})
(({'e_kwh': 0.0}, False), ({'e_kwh': 0.02}, True), [0.02])
>>> [coarse.apply(float(t), {"e_kwh": 103.0}, config=cfg)[0]["e_kwh"] for t in (205, 210, 250, 300)]  # it stops
[0.02, 0.016666666666666666, 0.01, 0.006666666666666667]
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from operators.ml.config import CountersConfig
from operators.pickled import PickledBySlots

RESET_SHARE = 0.5  # a fall to below this share of the last value is a reset (a wrap, a reset to 0)
# A coarse counter's rate (one that stays unchanged between steps) is held until a step's rate, or
# the bound an unchanged register sets, differs from it by more than this share: it is measured once
# per step, so each small change of a constant would be a novelty episode of its own.
COARSE_BAND = 0.1
DEFAULT = CountersConfig()


def matches(name: str, globs: Iterable[str]) -> bool:
    """``name`` matches one of the shell-style ``globs``, case-insensitively."""
    low = name.lower()
    return any(fnmatchcase(low, g.lower()) for g in globs)


class Counters(PickledBySlots):
    """Per sensor: how it moved so far, and the last value, time, step and rate of the counters. Picklable."""

    __slots__ = ("_last", "_rate", "_rises", "_steps", "counters", "never")

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}  # sensor -> (value, t) of its last reading
        self._rises: dict[str, int] = {}  # candidates: rises so far (a sensor that fell is in ``never``)
        self._rate: dict[str, float] = {}  # a counter's last rate
        # sensor -> (since, increment, interval): the first time its current value was read, and its
        # last step (the increment and the time from the step before); 0.0, 0.0 before its first step
        self._steps: dict[str, tuple[float, float, float]] = {}
        self.counters: set[str] = set()
        self.never: set[str] = set()  # fell without a reset, went below 0, or a level by name: not a counter

    def __getstate__(self) -> dict[str, Any]:
        """A counter's step rides in ``_rises`` (unused for counters) as ``(since, increment,
        interval, t)``, ``t`` its last reading's time: a version before step-aware rates loads the
        snapshot too (the names it has), and a step it did not keep up to date is dropped at load.
        A candidate's step is not kept: its next rise is measured from its last reading."""
        state = super().__getstate__()
        steps, last = state.pop("_steps"), self._last
        kept = [name for name in self.counters if name in steps and name in last]
        if kept:
            state["_rises"] = {**self._rises, **{name: (*steps[name], last[name][1]) for name in kept}}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Snapshots before step-aware rates have no steps: each counter's next rate is then
        ``Δvalue / Δt`` from its last reading, as it was."""
        rises, last = state.get("_rises", {}), state.get("_last", {})
        kept = {name: r for name, r in rises.items() if r.__class__ is tuple}
        if kept:
            state["_rises"] = {name: r for name, r in rises.items() if name not in kept}
        state["_steps"] = {name: r[:3] for name, r in kept.items() if name in last and last[name][1] == r[3]}
        super().__setstate__(state)

    def apply(
        self,
        t: float,
        readings: dict[str, float],
        learn: bool = True,
        config: CountersConfig = DEFAULT,
        context: tuple[str, ...] = (),
    ) -> tuple[dict[str, float] | None, bool]:
        """The readings with each counter's value replaced by its rate per second (``t`` in seconds),
        and whether the set of counters changed (the models must start afresh); None instead of the
        readings while a counter named by ``config.sensors`` has no rate yet (its first reading).
        ``learn`` False (maintenance): no sensor becomes a counter (a counter that falls is still
        none). ``context``: the operating point's globs (setpoints are never counters)."""
        changed = False
        out: dict[str, float] | None = readings
        last, never, steps = self._last, self.never, self._steps
        for name, v in readings.items():
            if name in never or v.__class__ is bool or v != v:
                continue
            prev = last.get(name)
            if prev is None and name not in self.counters and self._first(name, config, context):
                continue
            last[name] = (v, t)
            if name in self.counters:
                if out is readings:
                    out = dict(readings)
                if prev is None:  # a counter by name: no rate before its second reading
                    steps[name] = (t, 0.0, 0.0)
                    out = None
                    continue
                if v > prev[0] and name not in self._rate and steps.get(name, (prev[1],))[0] < prev[1]:
                    changed = True  # its first step, after readings scored at 0 (coarse): start afresh
                rate = self._counted(name, v, t, prev, config)
                if name not in self.counters:  # fell: no counter after all
                    rate = v
                    changed = True
                if out is not None:
                    out[name] = rate
                continue
            if v < 0.0:
                never.add(name)
                self._rises.pop(name, None)
                steps.pop(name, None)
                continue
            if prev is None:
                continue
            if v > prev[0]:
                entry = steps.get(name)
                steps[name] = (t, 0.0, 0.0)  # a candidate's step: when its value was first read
                if not learn:
                    continue
                rises = self._rises.get(name, 0) + 1
                self._rises[name] = rises
                if rises >= config.rises and v > 0.0:
                    self.counters.add(name)
                    since = entry[0] if entry is not None else prev[1]
                    self._rate[name] = self._stepped(name, v - prev[0], t, since)
                    if out is readings:
                        out = dict(readings)
                    if out is not None:
                        out[name] = self._rate[name]
                    changed = True
            elif v < prev[0]:
                if v >= RESET_SHARE * prev[0]:
                    never.add(name)
                    self._rises.pop(name, None)
                    steps.pop(name, None)
                else:  # a reset before it counted as a counter: it counts again from here
                    self._rises[name] = 0
                    steps[name] = (t, 0.0, 0.0)
        return out, changed

    def _first(self, name: str, config: CountersConfig, context: tuple[str, ...]) -> bool:
        """Classify a sensor at its first reading by name; True when it is never a counter."""
        if matches(name, config.levels) or matches(name, context):
            self.never.add(name)
            return True
        if config.sensors and matches(name, config.sensors):
            self.counters.add(name)
            return False
        if not config.detect:
            self.never.add(name)
            return True
        return False

    def _stepped(self, name: str, increment: float, t: float, since: float) -> float:
        """The rate of a step read at ``t``: the increment over the time since the value it left was
        first read (``since``: the last reading's time for a counter that steps every reading, so
        ``Δvalue / Δt``). A step read no later than that carries the last rate."""
        if t <= since:
            self._steps[name] = (t, *self._steps.get(name, (t, 0.0, 0.0))[1:])
            return self._rate.get(name, 0.0)
        self._steps[name] = (t, increment, t - since)
        return increment / (t - since)

    def _counted(self, name: str, v: float, t: float, prev: tuple[float, float], config: CountersConfig) -> float:
        """A counter's rate. At a step: the increment over the time since the previous step (its mean
        rate over that interval; ``Δvalue / Δt`` when it steps every reading). Between steps: that rate
        held, but never more than the last increment over the time since the last step (an unchanged
        register allows no more: a machine that stops shows its rate falling). A reset or a repeated
        time carries the last rate forward. A detected counter that falls by less than half (or below
        0) is none; a named one never stops."""
        rate = self._rate.get(name, 0.0)
        pv, pt = prev
        since, increment, interval = self._steps.get(name) or (pt, 0.0, 0.0)
        if v < pv:
            if (v >= RESET_SHARE * pv or v < 0.0) and not matches(name, config.sensors):
                self.counters.discard(name)
                self.never.add(name)
                self._steps.pop(name, None)
                return rate
            # counts again from the reset's reading; the rate carried is held, and bounded, as after a step
            self._steps[name] = (t, increment, increment / rate) if rate > 0.0 else (t, 0.0, 0.0)
            return rate
        if v > pv:
            stepped = self._stepped(name, v - pv, t, since)
            if since >= pt or abs(stepped - rate) > COARSE_BAND * rate:  # stepped at every reading, or moved
                rate = self._rate[name] = stepped
        elif t > pt and increment > 0.0:
            bound = increment / max(interval, t - since)  # all that the unchanged register allows
            if bound < (1.0 - COARSE_BAND) * rate:
                rate = self._rate[name] = bound
        return rate


__all__ = ["COARSE_BAND", "RESET_SHARE", "Counters", "matches"]
