"""The live models step's per-twin state and settings: :class:`TwinModelState` (picklable, recovered
after a restart), :class:`LiveModelConfig`, the twin's fleet and sensor ranges, and its silent sensors.

The step that updates it is :mod:`operators.ml.live_step`.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from operators.ml.config import CountersConfig, FailureConfig, ModelConfig, StatesConfig
from operators.ml.counters import Counters
from operators.ml.failure import TwinHistory
from operators.ml.sensor_limits import SensorLimit
from operators.ml.states import States
from operators.ml.twin_model import TwinModel
from operators.versioned_state import restore_slots, slot_state


@dataclass(frozen=True, slots=True)
class LiveModelConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    forecast_every: int = 10  # emit forecasts every N samples (0: never)
    model_name: str = "twinflow-t2"
    predict_every: int = 60  # send failure features to the fleet every N samples of a twin (0: never)
    # (fleet, twin_id glob) pairs, first match wins; other twins belong to default_fleet.
    fleets: tuple[tuple[str, str], ...] = ()
    default_fleet: str = "fleet"
    # Operating limits: forecasts of these sensors carry the limit and the predicted crossing time.
    limits: tuple[SensorLimit, ...] = ()
    # Physical ranges: a value outside is a sensor fault (out_of_range), not a machine anomaly.
    ranges: tuple[SensorLimit, ...] = ()


def fleet_of(twin_id: str, cfg: LiveModelConfig) -> str:
    """The fleet whose failure model serves ``twin_id`` (first matching glob, else the default)."""
    for fleet, pattern in cfg.fleets:
        if fnmatchcase(twin_id, pattern):
            return fleet
    return cfg.default_fleet


def ranges_for(twin_id: str, rules: tuple[SensorLimit, ...]) -> dict[str, tuple[float | None, float | None]]:
    """``{sensor: (low, high)}`` of the range rules that apply to ``twin_id`` (first match per sensor)."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for rule in rules:
        if rule.sensor not in out and fnmatchcase(twin_id, rule.twins):
            out[rule.sensor] = (rule.low, rule.high)
    return out


class TwinModelState:
    """One twin's models, its maintenance flag, its sampling period and when each sensor last reported."""

    __slots__ = ("held", "last_t", "last_ts", "maintenance", "model", "period_s", "samples", "seen", "ticked_at",
                 "twin_id", "wall_at_last")  # fmt: skip
    __getstate__ = slot_state  # the dict of attributes, as before the slots

    def __init__(self, cfg: LiveModelConfig, twin_id: str = "") -> None:
        self.model = TwinModel(cfg.model, ranges_for(twin_id, cfg.ranges))
        self.maintenance = False
        self.samples = 0
        self.last_ts: datetime | None = None
        self.last_t = 0.0  # last_ts in seconds
        self.period_s: float | None = None  # EWMA of the sample spacing, for forecast target times
        # Last value per sensor: OPC-UA reports by exception, so an envelope may carry only the
        # sensors that changed; the models see every sensor at its latest value (sample-and-hold).
        self.held: dict[str, float] = {}
        # Per sensor: (first report, last report, reports, last interval) in seconds: its usual reporting interval.
        self.seen: dict[str, array[float]] = {}  # (lists in snapshots of earlier versions)
        self.wall_at_last: float | None = None  # wall clock (epoch s) when the last reading was applied
        self.ticked_at = 0.0  # wall clock of the last silence timer
        self.twin_id = twin_id

    def __setstate__(self, state: dict) -> None:
        """Snapshots of older versions lack the newer attributes: fill them in."""
        defaults = {"seen": {}, "wall_at_last": None, "ticked_at": 0.0, "twin_id": "", "last_t": 0.0}
        restore_slots(self, {**defaults, **state})

    def adopt_failure_config(self, failure: FailureConfig | None) -> None:
        """Failure prediction switched on or off since this state was saved: follow the settings."""
        model = self.model
        if (model.config.failure is None) != (failure is None):
            model.config = replace(model.config, failure=failure)
            model.history = TwinHistory(failure) if failure else None

    def adopt_signal_config(self, counters: CountersConfig, states: StatesConfig) -> None:
        """``[ml.counters]`` or ``[ml.states]`` changed since this state was saved: the twin's sensors
        are classified afresh under the new settings and its scoring models restart (a warm-up)."""
        model = self.model
        cfg = model.config
        if (cfg.counters is not counters and cfg.counters != counters) or (
            cfg.states is not states and cfg.states != states
        ):
            model.config = replace(cfg, counters=counters, states=states)
            model.counters, model.states = Counters(), States()
            model.restart()

    def observe_time(self, ts: datetime, t: float) -> None:
        """A reading at ``ts`` (``t`` in seconds): the sampling period follows its spacing."""
        if self.last_ts is not None:
            dt = t - self.last_t
            if dt > 0:
                self.period_s = dt if self.period_s is None else 0.9 * self.period_s + 0.1 * dt
        self.last_ts, self.last_t = ts, t


SILENCE_CHECK_EVERY = 10  # readings between silence checks (and on every timer)


def silent_sensors(state: TwinModelState, now: float, cfg: LiveModelConfig) -> set[str]:
    """Sensors that have not reported for ``silence_factor`` of their usual intervals (and ``silence_min_s``)."""
    sh = cfg.model.sensor_health
    out = set()
    for name, rec in state.seen.items():
        first, last, n = rec[0], rec[1], rec[2]
        if n < 3:
            continue
        # its usual interval, or its last one if longer: a sensor that now reports less often (1 Hz,
        # then every 20 s) is silent after 10 of its new intervals, not its lifetime average's
        usual = (last - first) / (n - 1)
        if len(rec) > 3 and rec[3] > usual:
            usual = rec[3]
        if now - last > max(sh.silence_factor * usual, sh.silence_min_s):
            out.add(name)
    return out


def silence_due(state: TwinModelState | None, cfg: LiveModelConfig) -> datetime | None:
    """Wall-clock time at which the live flow should send a :class:`Tick` (None: nothing to watch)."""
    if state is None or state.wall_at_last is None or state.period_s is None or not cfg.model.sensor_health.enabled:
        return None
    sh = cfg.model.sensor_health
    wait = max(sh.silence_factor * state.period_s, sh.silence_min_s)
    return datetime.fromtimestamp(max(state.wall_at_last, state.ticked_at) + wait, UTC)
