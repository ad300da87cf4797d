"""Sensor faults as their own kind: frozen, out of range, spikes, quantised, silent.

A sensor that lies is not a machine fault, and it must not teach the other detectors: while a
sensor is faulty it is masked (left out of learning and scoring) and reported by name in
``Score.sensor_faults``. Judged per block of ``block`` samples against the sensor's own behaviour
in the healthy reference (the first ``reference`` learned samples):

* **frozen** — the value stops changing (changes below a thousandth of its usual step count as
  none) for a run that is at least ``frozen_samples`` long, that the sensor's own repeat rate in
  the reference makes less likely than ``frozen_probability``, and that is ``frozen_run_factor``
  times the longest run the sensor held still in the reference: a regulated value read through an
  integer register holds still in stretches, not at random, so the repeat rate alone would call
  its next long stretch frozen. A sensor that never changed in the reference (a setpoint, a status)
  is never called frozen (nor spikes, nor quantised).
* **out_of_range** — outside its physical range (``[[ml.ranges]]``: sensor, low/high, twins).
* **spikes** — ``spike_count`` or more single-sample excursions of at least ``spike_sigmas``
  usual steps that come straight back, within ``spike_window`` samples.
* **quantised** — the share of unchanged steps jumps above ``quantised_share`` (and above the
  reference's own share): the resolution collapsed.
* **silent** — no value for ``silence_factor`` usual reporting intervals (decided with timers by
  the live step, :mod:`operators.ml.live_step`).

>>> import numpy as np
>>> from operators.ml.config import SensorHealthConfig
>>> rng = np.random.default_rng(0)
>>> sh = SensorHealth(["a", "b"], SensorHealthConfig(), block=10, reference=200)
>>> for t in range(400):
...     _ = sh.push(np.array([rng.normal(), 5.0 if t < 300 else 5.0]), learn=True)
>>> sh.faults   # b never changed in the reference: a constant is not a frozen sensor
{}
>>> for t in range(100):
...     _ = sh.push(np.array([1.25, rng.normal()]), learn=True)
>>> sh.faults
{'a': 'frozen'}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from operators.ml.config import SensorHealthConfig
from operators.versioned_state import PackedRows, VersionedState, packed_zeros

STATE_VERSION = 1
KINDS = ("frozen", "out_of_range", "spikes", "quantised", "silent")
UNMASKED = frozenset({"spikes"})


class SensorHealth(VersionedState):
    """Per-twin sensor-fault state over its health sensors; picklable."""

    __slots__ = (
        "_buf", "_fbuf", "_no_spikes", "_packed", "_pos", "_primed", "_ranged", "_ref_blocks", "_ref_total",
        "_share_rate", "_spike_blocks", "_spikes", "block", "config", "current", "faults", "mask", "n_faults",
        "n_ref", "ranges", "reference", "sensors", "silent", "started", "step_scale",
    )  # fmt: skip
    # Vectors (one value per sensor) as rows of one array (operators/versioned_state.py, PackedRows):
    _ref_steps = PackedRows(0)  # Σ of per-block median |step| (reference)
    _ref_zero = PackedRows(1)  # unchanged steps in the reference
    _ref_abs = PackedRows(2)  # Σ |step| (fallback scale for quantised sensors)
    _need = PackedRows(3)  # frozen run needed per sensor
    _ref_share = PackedRows(4)  # share of unchanged steps in the reference
    _run = PackedRows(5)  # current run of unchanged steps
    _zero_share = PackedRows(6)  # smoothed share of unchanged steps
    _lo, _hi = PackedRows(7), PackedRows(8)  # physical range
    _tiny = PackedRows(9)  # a step below this is none
    # from the reference on: the run that is frozen, the step that is a spike, the share that is quantised
    _frozen_at, _spike_step, _quantised_at = PackedRows(10), PackedRows(11), PackedRows(12)
    _ref_longest = PackedRows(13)  # the longest run of unchanged steps in the reference
    CONFIG = SensorHealthConfig
    STATE_VERSION = STATE_VERSION

    def __init__(
        self,
        sensors: list[str],
        config: SensorHealthConfig | None = None,
        block: int = 10,
        reference: int = 400,
        ranges: dict[str, tuple[float | None, float | None]] | None = None,
    ) -> None:
        self.config = config or SensorHealthConfig()
        self.sensors = list(sensors)
        self.block = block
        self.reference = reference
        self.ranges = dict(ranges or {})
        self.reset()

    def _start_afresh(self, config: SensorHealthConfig, state: dict[str, Any]) -> None:
        self.__init__(state.get("sensors", []), config, state.get("block", 10), state.get("reference", 400),
                      state.get("ranges"))  # fmt: skip

    def reset(self) -> None:
        """Forget the reference and every fault (a rebaseline or a reset)."""
        d, b = len(self.sensors), self.block
        self._buf = np.zeros((b + 2, d))  # two carried samples, then the block
        self._fbuf: np.ndarray | None = None  # per sample: which sensors reported (None: all, always)
        self._pos = 0
        self._primed = 0  # samples seen (the first two fill the carried rows)
        self.n_ref = 0  # reference samples learned
        self._packed = packed_zeros(SensorHealth, d)  # the PackedRows above, all 0 but for:
        self._need = math.inf
        self._lo = [-math.inf if self.ranges.get(s, (None, None))[0] is None else self.ranges[s][0]
                    for s in self.sensors]  # fmt: skip
        self._hi = [math.inf if self.ranges.get(s, (None, None))[1] is None else self.ranges[s][1]
                    for s in self.sensors]  # fmt: skip
        self._ref_blocks = 0
        self._ref_total = 0
        self.step_scale: np.ndarray | None = None
        self._spikes: list[np.ndarray] = []  # spikes per recent block
        self._no_spikes = np.zeros(d, dtype=np.int64)
        self._ranged = bool(np.isfinite(self._lo).any() or np.isfinite(self._hi).any())
        self.faults: dict[str, str] = {}  # detected from the values
        self.current: dict[str, str] = {}  # the same plus silent sensors: what is reported and masked
        self.silent: set[str] | frozenset[str] = frozenset()  # (the empty one is shared)
        self.mask: np.ndarray | None = None  # True for faulty sensors (None: none)
        self.started: list[str] = []  # sensors whose fault started at the last processed block
        self.n_faults = 0

    @property
    def ready(self) -> bool:
        return self.step_scale is not None

    @property
    def last_block(self) -> np.ndarray:
        """The samples of the block just judged (valid until the next :meth:`push`)."""
        return self._buf[2:]

    # ------------------------------------------------------------------ per sample
    def push(self, x: np.ndarray, learn: bool, reported: np.ndarray | None = None) -> bool:
        """Take one sample (health sensors in ``sensors`` order); True when a block was judged.
        ``reported`` (bool per sensor; None: all) marks the sensors that sent a value with it: the
        others hold their last value, which is no step of theirs (a sensor that reports less often
        than its twin is neither ``quantised`` nor ``frozen`` for it)."""
        fbuf = getattr(self, "_fbuf", None)
        if reported is not None and fbuf is None:
            fbuf = self._fbuf = np.ones(self._buf.shape, dtype=bool)
        if self._primed < 2:
            self._buf[self._primed] = x
            if fbuf is not None:
                fbuf[self._primed] = True if reported is None else reported
            self._primed += 1
            return False
        self._buf[2 + self._pos] = x
        if fbuf is not None:
            fbuf[2 + self._pos] = True if reported is None else reported
        self._pos += 1
        if self._pos < self.block:
            return False
        self._pos = 0
        self._judge(learn)
        self._buf[:2] = self._buf[-2:]
        if fbuf is not None:
            fbuf[:2] = fbuf[-2:]
        return True

    def restart_block(self) -> None:
        """Drop the block in progress and the carried samples (a setpoint change settles: the samples
        before it and after it are not one block, and the step between them is not a sensor's)."""
        self._pos = self._primed = 0

    def set_silent(self, names: set[str]) -> bool:
        """The live step's timers: these sensors are silent now (empty: none). True when it changed."""
        names = names & set(self.sensors)
        if names == self.silent:
            return False
        new = names - self.silent
        self.silent = names or frozenset()
        self._publish(list(new))
        return True

    # ------------------------------------------------------------------ per block
    def _judge(self, learn: bool) -> None:
        cfg = self.config
        buf = self._buf
        steps = buf[2:] - buf[1:-1]  # the block's steps (from the last carried sample)
        absteps = np.abs(steps)
        if self.step_scale is None:
            if learn:
                self._learn_reference(absteps)
            return
        self.started = []
        b = len(steps)
        unchanged = absteps <= self._tiny
        fbuf = getattr(self, "_fbuf", None)
        if fbuf is not None and not fbuf[2:].all():  # held values are no steps: only reports count
            changed = ~unchanged  # (a held value repeats exactly: a change is always a report)
            unchanged &= fbuf[2:]
            flat = ~np.logical_or.reduce(changed, axis=0)
            counted = np.add.reduce(unchanged, axis=0)
            after = np.cumsum(unchanged[::-1], axis=0)  # reported unchanged steps from the block's end
            last = changed[::-1].argmax(axis=0)  # steps after the last change
            trailing = np.where(last > 0, after[np.maximum(last - 1, 0), np.arange(len(last))], 0)
            self._run = np.where(flat, self._run + counted, trailing)
            reports = np.add.reduce(fbuf[2:], axis=0)
            share = counted / np.maximum(reports, 1)
            silent_block = reports == 0
        else:
            flat = np.logical_and.reduce(unchanged, axis=0)
            trailing = unchanged[::-1].argmin(axis=0)  # unchanged steps at the block's end
            self._run = np.where(flat, self._run + b, trailing)
            share = np.add.reduce(unchanged, axis=0) / b
            silent_block = flat
        # spikes (only where a step is big enough): the centre leaves both neighbours by k usual
        # steps on the same side and the neighbours agree
        if np.logical_or.reduce(np.maximum.reduce(absteps, axis=0) > self._spike_step):
            left, centre, right = buf[:-2], buf[1:-1], buf[2:]
            a, c = centre - left, centre - right
            aa, ac = np.abs(a), np.abs(c)
            back = np.abs(left - right) < 0.5 * np.minimum(aa, ac)
            spiked = np.add.reduce((aa > self._spike_step) & (ac > self._spike_step) & (a * c > 0) & back, axis=0)
        else:
            spiked = self._no_spikes
        self._spikes.append(spiked)
        del self._spikes[: -self._spike_blocks]
        flat_or_held = flat | silent_block
        self._zero_share += np.where(flat_or_held, 0.0, self._share_rate * (share - self._zero_share))  # flat: `frozen`
        out = self._frozen_at <= self._run  # frozen
        none = self._no_spikes  # the usual recent blocks: none had a spike (no sum of 30 zero rows)
        spikes = none if all(s is none for s in self._spikes) else np.add.reduce(self._spikes, axis=0)
        anyof = np.logical_or.reduce
        candidates = anyof(out) or anyof(spikes > 0) or anyof(self._zero_share >= self._quantised_at) or self.faults
        if self._ranged:
            rows = buf[2:]
            ranged = (np.minimum.reduce(rows, axis=0) < self._lo) | (np.maximum.reduce(rows, axis=0) > self._hi)
            candidates = candidates or anyof(ranged)
        else:
            ranged = None
        if not candidates:
            return
        faults: dict[str, str] = {}
        for i, name in enumerate(self.sensors):
            if ranged is not None and ranged[i]:
                faults[name] = "out_of_range"
            elif out[i]:
                faults[name] = "frozen"
            elif spikes[i] >= cfg.spike_count or (self.faults.get(name) == "spikes" and spikes[i] > 0):
                faults[name] = "spikes"
            elif self._zero_share[i] >= self._quantised_at[i] and not flat[i]:
                faults[name] = "quantised"
        started = [s for s, kind in faults.items() if self.faults.get(s) != kind]
        if faults != self.faults:
            self.faults = faults
            self._publish(started)

    def _learn_reference(self, absteps: np.ndarray) -> None:
        self._ref_steps += median_rows(absteps)
        self._ref_blocks += 1
        unchanged = absteps == 0
        self._ref_zero += np.add.reduce(unchanged, axis=0)  # what .sum(axis=0) calls
        run, longest = self._run, self._ref_longest  # (views: updated in place)
        for row in unchanged:  # the runs of unchanged steps, across blocks (a block is ~10 rows)
            run += row
            run *= row
            np.maximum(longest, run, out=longest)
        self._ref_abs += np.add.reduce(absteps, axis=0)
        self._ref_total += len(absteps)
        self.n_ref += self.block
        if self.n_ref >= self.reference:
            self._finish_reference()

    def _publish(self, started: list[str]) -> None:
        faults = dict(self.faults)
        for s in self.silent:
            faults.setdefault(s, "silent")
        self.current = faults
        self.started = [s for s in started if s in faults]
        self.n_faults += len(self.started)
        # spiking sensors are reported but stay in use: between spikes they still tell the truth
        masked = [s for s, kind in faults.items() if kind not in UNMASKED]
        self.mask = np.array([s in masked for s in self.sensors]) if masked else None

    def _finish_reference(self) -> None:
        cfg = self.config
        n = max(self._ref_total, 1)
        scale = self._ref_steps / max(self._ref_blocks, 1)
        nonzero = self._ref_abs / np.maximum(n - self._ref_zero, 1)  # mean non-zero step
        # a quantised sensor's usual step is its quantum, even when most steps are none
        self.step_scale = np.maximum(scale, 0.5 * nonzero)
        self._tiny = 1e-3 * self.step_scale
        share = self._ref_zero / n
        self._ref_share = share
        self._zero_share = share.copy()
        # a run of r unchanged steps has probability share**r: needed r for frozen_probability
        with np.errstate(divide="ignore"):
            need = np.where(
                share >= 1.0 - 1.0 / n,
                math.inf,
                np.ceil(math.log(cfg.frozen_probability) / np.log(np.maximum(share, 1.0 / n))),
            )
        self._need = np.maximum(np.maximum(need, cfg.frozen_samples), cfg.frozen_run_factor * self._ref_longest)
        self._frozen_at = self._need
        # ... nor `spikes`: it has no usual step to measure an excursion against
        self._spike_step = np.where(np.isinf(need), math.inf, cfg.spike_sigmas * self.step_scale)
        self._spike_blocks = max(1, cfg.spike_window // self.block)
        self._share_rate = min(1.0, 2.0 / self._spike_blocks)
        q = cfg.quantised_share
        # a sensor that never changed in the reference (setpoint, status) is never `quantised` either
        self._quantised_at = np.where(np.isinf(self._need), math.inf, np.maximum(q, share + (1 - share) * q))


def median_rows(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=0)`` of values without -0.0 (absolute steps), bit for bit (the mean of the
    two middle values of an even count is their sum halved) at a quarter of its cost for a block of
    a few rows; a column holding NaN (sorted last) is left to ``np.median``."""
    s = np.sort(a, axis=0)
    k = len(s) // 2
    if np.isnan(s[-1]).any():
        return np.median(a, axis=0)
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) * 0.5
