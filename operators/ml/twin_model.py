"""One twin's online models behind one call: the unit that lives in the per-twin step's state.

Per sample, in this order (docs/ml.md, "Two time scales"):

1. **operating point** (:mod:`operators.ml.operating_point`): setpoints are split off, the health
   readings translated to the reference operating point; nothing is scored while a change settles;
2. **sensor health** (:mod:`operators.ml.sensor_health`): frozen, out-of-range, spiking, quantised or
   silent sensors are named and masked from everything below;
3. **novelty** (:mod:`operators.ml.novelty`, fast): what is unusual now, against a baseline that
   follows the machine and re-learns a lasting change after ``relearn_s`` seconds of alarm;
4. **condition** (:mod:`operators.ml.condition`, slow): levels and relations against the healthy
   reference, the health index and its change tests;
5. one **alarm** (:mod:`operators.ml.scoring`) on the largest surprise of 2–4: ``anomaly_score``,
   ``is_anomaly`` and the ``kind`` of the episode; learning only outside alarms;
6. forecasts and failure features (optional).

Failure/repair events (``twin.events``) go to :meth:`TwinModel.on_event` (a repair also re-learns
the healthy reference); :meth:`TwinModel.rebaseline` is ``twinflow model rebaseline``. The state
is picklable and carries ``STATE_VERSION``; an unknown version starts afresh (an earlier twinflow
reading a later layout, too: its parts' vectors are pickled as one array since version 4, see
:class:`~operators.versioned_state.PackedRows`).

>>> from operators.ml.config import AnomalyConfig
>>> m = TwinModel(ModelConfig(anomaly=AnomalyConfig(warmup=20, window=3)))
>>> outs = [m.update(t, {"a": t % 3 + 0.5, "b": 1.0}) for t in range(50)]
>>> outs[-1].score.warming_up, m.anomaly.n_learned
(False, 50)
>>> _ = m.update(50, {"a": 1.0, "b": 1.0}, learn=False)
>>> m.anomaly.n_learned
50
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime
from typing import Any

import msgspec
import numpy as np

from operators.ml.condition import ConditionMonitor
from operators.ml.config import ModelConfig
from operators.ml.counters import Counters
from operators.ml.failure import FleetFailureModel, RulEstimate, TwinHistory
from operators.ml.forecast import ForecastBatch, SensorForecast, SensorForecasts
from operators.ml.novelty import NoveltyDetector, seconds
from operators.ml.operating_point import OperatingPoint
from operators.ml.regimes import relearn_due
from operators.ml.scoring import Alarm, Score, score_of, surprise_of
from operators.ml.sensor_health import SensorHealth
from operators.ml.states import States
from operators.versioned_state import canonical, restore_slots, slot_state

# 3: sensor health, condition monitor, one alarm, bounded scores; 4: packed rows as one array; 5: counters;
# 6: states
STATE_VERSION = 6
READS = (3, 4, 5, 6)  # layouts this version reads (3's packed rows come one array per row); older ones start afresh
Ranges = dict[str, tuple[float | None, float | None]]


class TwinOutput(msgspec.Struct, frozen=True):
    ts: Any
    score: Score
    forecasts: dict[str, SensorForecast] | None = None
    failure: RulEstimate | None = None


def time_value(ts: Any, unit_s: float) -> float:
    """A timestamp or a number as a float on the failure model's time axis."""
    if isinstance(ts, datetime):
        return ts.timestamp() / unit_s
    return float(ts)


class TwinModel:
    """Sensor health + novelty + condition (conditioned on the operating point) + forecasts + failure features."""

    __slots__ = (
        "_fault_sensors", "_fault_surprise", "alarm", "anomaly", "condition", "config", "counters", "forecaster",
        "history", "kind", "operating_point", "ranges", "sensor_health", "states",
    )  # fmt: skip

    def __init__(self, config: ModelConfig | None = None, ranges: Ranges | None = None) -> None:
        self.config = config or ModelConfig()
        self.ranges = dict(ranges or {})  # physical range per sensor (sensor_faults out_of_range)
        self.reset()

    def reset(self) -> None:
        """Forget everything this twin learned (``twinflow model reset TWIN``)."""
        cfg = self.config
        self.counters = Counters()  # which sensors count (energy, hours, pieces): scored as rates
        self.states = States()  # which sensors are statuses sent as numbers: context, as booleans
        self.forecaster = SensorForecasts(cfg.forecast) if cfg.forecast else None
        self.history = TwinHistory(cfg.failure) if cfg.failure else None
        self.restart()

    def restart(self) -> None:
        """Start the scoring models afresh (a sensor turned out to be a counter or a state, or not):
        the forecasts and the failure history, which see the readings as sent, go on (a state's
        forecaster is dropped by :meth:`update`: a state is not forecast)."""
        cfg = self.config
        self.anomaly = NoveltyDetector(cfg.anomaly)
        self.operating_point = OperatingPoint(
            cfg.operating_point, cfg.anomaly.baseline_halflife, frozenset(self.states.states)
        )
        self.condition: ConditionMonitor | None = None  # built when the health sensors are known
        self.sensor_health: SensorHealth | None = None
        a = cfg.anomaly
        self.alarm = Alarm(a.threshold, a.exit_ratio, a.enter_after, a.exit_after, a.score_halflife)
        self.kind = ""  # of the current episode
        self._fault_surprise = 0.0  # a sensor fault started at the last judged block (held one block)
        self._fault_sensors: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"_v": STATE_VERSION, **slot_state(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("_v", None)
        restore_slots(self, state)
        self.config = canonical(self.config)
        if version not in READS:
            if not hasattr(self, "ranges"):
                self.ranges = {}
            self.reset()
        else:
            if not hasattr(self, "counters"):  # before version 5: no counters known yet
                self.counters = Counters()
            if not hasattr(self, "states"):  # before version 6: no states known yet
                self.states = States()
            if self.forecaster is not None and self.states.states:  # (written when states were still forecast)
                self.forecaster.forget(self.states.states)

    # ------------------------------------------------------------------ control
    def rebaseline(self, sensor: str | None = None) -> bool:
        """Learn the healthy reference again (all sensors, or one sensor's level); audited by the CLI.
        False when ``sensor`` is not one of the twin's health sensors (nothing changes)."""
        if self.condition is None:
            return sensor is None  # nothing learned yet: the reference is being learned anyway
        done = self.condition.rebaseline(sensor)
        if done and self.sensor_health is not None and sensor is None:
            self.sensor_health.reset()
        return done

    def on_event(self, kind: str, ts: Any) -> list[tuple[dict[str, float], float]]:
        """A failure returns this twin's labelled history (for the fleet model); a repair starts a new
        life: the failure history is discarded and the healthy reference is learned again."""
        if kind not in ("failure", "repair"):
            raise ValueError(f"unknown twin event kind {kind!r}: expected 'failure' or 'repair'")
        if kind == "repair":
            self.rebaseline()
        if self.history is None:
            return []
        t = time_value(ts, self.config.time_unit_s)
        if kind == "failure":
            return self.history.on_failure(t)
        self.history.on_repair(t)
        return []

    def forecast_ready(self, sensor: str, seen: int | None = None) -> bool:
        """The sensor's forecast has seen enough data to be trusted: its interval is calibrated on a
        full window of its own errors (no limit breach is predicted before). ``seen``: the samples
        its forecaster had learned at the time in question (default: now)."""
        f = self.forecaster
        if f is None:
            return False
        return (f.seen(sensor) if seen is None else seen) >= f.config.window + f.config.horizon

    # ------------------------------------------------------------------ per sample
    def _build(self, sensors: list[str]) -> None:
        cfg = self.config
        ranges = {s: self.ranges[s] for s in sensors if s in self.ranges}
        self.condition = ConditionMonitor(sensors, cfg.condition, cfg.anomaly.threshold)
        self.sensor_health = SensorHealth(
            sensors, cfg.sensor_health, cfg.condition.block, cfg.condition.reference, ranges
        )

    def update(
        self,
        ts: Any,
        readings: dict[str, float],
        learn: bool = True,
        fleet: FleetFailureModel | None = None,
        forecasts: bool = True,
        deferred: ForecastBatch | None = None,
        t: float | None = None,
        reported: Collection[str] | None = None,
    ) -> TwinOutput:
        """Score one sample (then learn from it unless ``learn`` is False or it is anomalous).

        ``forecasts=False`` skips building the forecast records (the models still learn); the live
        flow asks for them only on the samples it publishes them. With ``deferred`` the forecasters
        learn the sample later, with the rest of the twin's batch (:meth:`ForecastBatch.run`: the
        same numbers; nothing else reads the forecasters in between): no forecasts here. ``t``: ``ts`` in
        seconds (:func:`seconds` with ``time_unit_s``) when the caller has it already. ``reported``:
        the sensors that sent a value with this sample when ``readings`` also holds others' last
        values (sensor health judges each sensor on its own reports; None: all reported)."""
        cfg = self.config
        t = seconds(ts, cfg.time_unit_s) if t is None else t
        context = cfg.operating_point.context
        scored, changed = self.counters.apply(t, readings, learn, cfg.counters, context)
        states = self.states.states
        known = len(states)
        if self.states.apply(readings, learn, cfg.states, context, cfg.counters.sensors):
            changed = True
        # new states (detected, or named at their first reading): their forecasters go (not forecast)
        forget = states if (changed or len(states) != known) and states else ()
        if changed:  # a sensor turned out to be a counter or a state (or not): learn from scratch
            self.restart()
        # None: the first reading of a counter named in [ml.counters] (no rate yet): not scored
        score = Score(ts, math.nan, False, True) if scored is None else self._score(ts, scored, learn, t, reported)
        out_forecasts = None
        if self.forecaster is not None:
            faults = score.sensor_faults
            skip = faults.keys() | states if faults and states else faults or states  # a state is not forecast
            fr = {k: v for k, v in readings.items() if k not in skip} if skip else readings
            if deferred is not None:
                deferred.add(fr if learn else None, not score.is_anomaly, forecasts, forget)
            else:
                if forget:
                    self.forecaster.forget(forget)
                self.forecaster.update(fr, learn=learn, calibrate=not score.is_anomaly)
                out_forecasts = self.forecaster.forecast() if forecasts else None
        failure = None
        if self.history is not None:
            feats = self.history.observe(time_value(ts, cfg.time_unit_s), readings, keep=learn)
            if fleet is not None:
                failure = fleet.predict(feats)
        return TwinOutput(ts, score, out_forecasts, failure)

    def _score(
        self, ts: Any, readings: dict[str, float], learn: bool, t: float, reported: Collection[str] | None = None
    ) -> Score:
        cfg = self.config
        det = self.anomaly
        cond, sh = self.condition, self.sensor_health
        noise = sh.step_scale if sh is not None else None  # about one sample's noise per health reading
        # where the readings were lately: only a change of operating point needs it (no context: none)
        level = cond.level if cond is not None and self.operating_point.context else None
        shifted = self.operating_point.prepare(ts, readings, det, learn, cfg.time_unit_s, noise, level, t)
        if shifted is None:  # a setpoint change settles: nothing is scored or learned
            if sh is not None and cond is not None:
                sh.restart_block()
                cond.restart_block()
            if self.alarm.length:  # an episode does not outlive a change of operating point
                self.alarm.clear()
                det.release()
            faults = dict(sh.current) if sh is not None else {}
            health = cond.health if cond is not None and cond.ready else None
            return Score(ts, math.nan, False, False, sensor_faults=faults, health=health)
        if isinstance(shifted, np.ndarray):  # the health readings, translated (op.health order)
            if not det.sensors:
                det.sensors = list(self.operating_point.health)
            x = shifted
        else:
            x = det.vector(shifted)
        if not det.sensors:
            return Score(ts, math.nan, False, True)
        if cond is None or sh is None:
            self._build(det.sensors)
            cond, sh = self.condition, self.sensor_health
            assert cond is not None and sh is not None
        alarm = self.alarm
        quiet = learn and not alarm.length  # what may become part of a reference
        enabled = cfg.sensor_health.enabled
        shift = self.operating_point.shift
        raw = x if shift is None else x + shift  # sensor health judges what the sensors said
        fresh = None
        if reported is not None and len(reported) < len(sh.sensors):
            fresh = np.fromiter((name in reported for name in sh.sensors), dtype=bool, count=len(sh.sensors))
        judged = enabled and sh.push(raw, quiet, fresh)
        if judged:
            self._fault_surprise = 2.0 * alarm.enter if sh.started else 0.0
            self._fault_sensors = {s: 1.0 / len(sh.started) for s in sh.started}
        mask = sh.mask if enabled else None
        clock = t if isinstance(ts, datetime) else None  # a daily profile needs a real clock
        novelty = det.observe(x, mask, alarm.enter if learn else math.inf, clock)  # no recall in maintenance
        if cfg.condition.enabled:
            if not enabled:  # the condition monitor keeps its own blocks
                cond.push(x, quiet)
            elif judged:  # one block for both: sensor health's samples, at the reference operating point
                rows = sh.last_block
                n = len(rows)
                mean = np.add.reduce(rows, axis=0) / n
                var = np.maximum(np.add.reduce(rows * rows, axis=0) / n - mean * mean, 0.0)
                m = mean if shift is None else mean - shift
                if mask is not None and cond.mu is not None:
                    m = np.where(mask, cond.mu, m)
                cond.push_block(m, var, n, quiet)
        warming = novelty != novelty
        surprise, kind = novelty, "novelty"
        if not warming:
            if cond.surprise > surprise:
                surprise, kind = cond.surprise, cond.event_kind or "condition"
            if self._fault_surprise > surprise:
                surprise, kind = self._fault_surprise, "sensor_fault"
        was = alarm.length
        in_alarm = alarm.update(surprise, t)
        published = alarm.published(surprise)
        if in_alarm and not was:
            self.kind = kind
        contrib: dict[str, float] = {}
        if in_alarm or surprise >= alarm.enter:
            if kind == "novelty":
                contrib = det.explain()
            elif kind == "sensor_fault":
                contrib = dict(self._fault_sensors)
            elif cond.events:
                contrib = {s: 1.0 / len(cond.events) for s in cond.events}
        drift = False
        if in_alarm:
            det.hold()
            if learn and novelty >= alarm.exit and relearn_due(alarm, t, cfg.anomaly):
                det.relearn()
                alarm.clear()
                in_alarm, drift = False, True
        elif det._rpos:
            det.release()
        learned = learn and not in_alarm
        if learned:
            drift = det.learn(novelty) or drift
            self.operating_point.learned()
        faults = sh.current
        health = cond.health if cond.ready else None
        if in_alarm:
            out_kind = self.kind
        elif faults:
            out_kind = "sensor_fault"
        elif health is not None and health < cfg.anomaly.threshold:
            out_kind = "condition"
        else:
            out_kind = ""
        return Score(
            ts,
            score_of(published),
            in_alarm,
            warming,
            contrib,
            drift,
            learned,
            out_kind,
            health,
            cond.drivers,
            dict(faults) if faults else {},
        )


__all__ = ["STATE_VERSION", "TwinModel", "TwinOutput", "surprise_of", "time_value"]
