"""Parameters of the online models (plain dataclasses, no heavy imports; used by settings).

Defaults were chosen on SKAB (anomaly) and C-MAPSS FD001 (failure) and kept general; see docs/ml.md.
Units: ``samples`` means readings of one twin; ``time units`` are the time column's own units for
numbers (e.g. cycles) and ``time_unit_s`` seconds (default hours) for timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.pickled import pickled_by_fields
from operators.strict import STRICT


def _check(obj: object, rules: dict[str, tuple[float, float]]) -> None:
    for name, (lo, hi) in rules.items():
        value = getattr(obj, name)
        if not lo <= value <= hi:
            raise ValueError(f"{type(obj).__name__}.{name}={value!r} must be within [{lo}, {hi}]")


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """Fast time scale: the novelty detector (operators/ml/novelty.py) and the alarm on the combined score.

    ``threshold`` is in the units of ``anomaly_score`` (0…1, see operators/ml/scoring.py) and applies to
    every detector of the twin: novelty, condition changes, relations and sensor faults.
    """

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    warmup: int = 400  # samples learned before scoring starts (never flagged)
    window: int = 10  # samples in the short moving average
    baseline_halflife: float = 800.0  # samples; how fast the novelty baseline follows slow drift
    shrinkage: float = 0.2  # covariance shrinkage towards its diagonal (0 = none, 1 = diagonal)
    threshold: float = 0.5  # alarm level of anomaly_score (score units, 0…1)
    exit_ratio: float = 0.7  # hysteresis: an alarm ends when the surprise < exit_ratio × the threshold's ...
    exit_after: int = 1  # ... for this many consecutive samples (fills short gaps within an anomaly)
    enter_after: int = 1  # consecutive samples at or above the threshold needed to raise an alarm
    calibration_size: int = 1000  # recent normal deviations kept for covariance and score calibration
    refresh_every: int = 50  # learned samples between covariance/calibration refreshes
    # Seconds of continuous alarm after which the novelty detector takes the new state as normal (a
    # lasting change is one episode; the condition monitor keeps it visible in `health`). Numeric
    # times (replayed cycles) count time_unit_s seconds per unit.
    relearn_s: float = 450.0
    # Within an episode the published anomaly_score decays with this half-life (samples) unless the
    # state gets worse: the score says how new the departure is, is_anomaly how long it lasts.
    score_halflife: float = 2.0
    drift_delta: float = 0.002  # ADWIN confidence on the log-score of normal points
    point: bool = True  # also score each sample on its own (spikes), next to the moving average
    seasonal: bool = True  # learn a daily profile, subtract it once it explains the data (ml/seasonality.py)

    def __post_init__(self) -> None:
        _check(
            self,
            {
                "warmup": (1, 1e9),
                "window": (1, 1e6),
                "baseline_halflife": (1, 1e12),
                "shrinkage": (0, 1),
                "threshold": (1e-3, 0.999),
                "exit_ratio": (0, 1),
                "exit_after": (1, 1e6),
                "enter_after": (1, 1e6),
                "calibration_size": (10, 1e7),
                "refresh_every": (1, 1e9),
                "relearn_s": (0, 1e12),
                "score_halflife": (0.1, 1e12),
                "drift_delta": (1e-12, 1),
            },
        )


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class ConditionConfig:
    """Slow time scale: condition monitoring against the healthy reference (operators/ml/condition.py)."""

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    enabled: bool = True  # the health index against the healthy reference (condition monitoring)
    block: int = 10  # samples averaged into one block (the monitor's time step)
    reference: int = 400  # learned samples that make the healthy reference (commissioning / warm-up)
    halflife: float = 5.0  # blocks; smoothing of the level compared with the reference (health)
    # Standardised deviation (reference units) at which a sensor's health is 0.5.
    alarm: float = 8.0
    cusum_k: float = 5.0  # allowance of the change test (reference units per block)
    cusum_h: float = 20.0  # the change test's decision level (a condition event)
    relations: bool = True  # also score each sensor against its prediction from the others
    # A sensor's reference spread is never taken below its noise (one sample's) nor below this share
    # of its reference level: a short reference cannot know the slow wander of a healthy machine.
    level_floor: float = 0.01

    def __post_init__(self) -> None:
        _check(
            self,
            {
                "block": (1, 1e6),
                "reference": (2, 1e9),
                "halflife": (0.1, 1e9),
                "alarm": (1e-3, 1e6),
                "cusum_k": (0, 1e6),
                "cusum_h": (1e-3, 1e9),
                "level_floor": (0, 1e3),
            },
        )


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class SensorHealthConfig:
    """Sensor faults as their own kind (operators/ml/sensor_health.py)."""

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    enabled: bool = True  # sensor fault detection: frozen, spikes, quantised, out of range, silent
    # Frozen: a run of identical values at least this long, and so long that the sensor's own repeat
    # rate in the reference makes it less likely than frozen_probability.
    frozen_samples: int = 30
    frozen_probability: float = 1e-6  # a run less likely than this (from the sensor's reference) is frozen
    spike_sigmas: float = 8.0  # a spike leaves and returns by this many reference step sizes
    spike_count: int = 3  # spikes within spike_window samples that make a `spikes` fault
    spike_window: int = 300  # samples over which spike_count spikes are counted
    quantised_share: float = 0.6  # share of unchanged steps (above the reference's) that means `quantised`
    silence_factor: float = 10.0  # silent for this many usual reporting intervals ...
    silence_min_s: float = 10.0  # ... and at least this many seconds
    # ... and frozen only after this many times the longest run the sensor held still in the reference
    # (last: older snapshots pickled these fields in order, operators/pickled.py)
    frozen_run_factor: float = 3.0

    def __post_init__(self) -> None:
        _check(
            self,
            {
                "frozen_samples": (2, 1e9),
                "frozen_probability": (1e-300, 0.5),
                "frozen_run_factor": (0, 1e6),
                "spike_sigmas": (1, 1e6),
                "spike_count": (1, 1e6),
                "spike_window": (2, 1e9),
                "quantised_share": (0, 1),
                "silence_factor": (1, 1e9),
                "silence_min_s": (0, 1e12),
            },
        )


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """Per-sensor forecasts (operators/ml/forecast.py)."""

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    horizon: int = 10  # samples ahead
    alpha: float = 0.3  # Holt level smoothing
    beta: float = 0.05  # Holt trend smoothing
    coverage: float = 0.9  # prediction-interval coverage (split-conformal on recent errors)
    window: int = 200  # recent errors used for the interval

    def __post_init__(self) -> None:
        _check(
            self,
            {
                "horizon": (1, 1e6),
                "alpha": (1e-6, 1),
                "beta": (0, 1),
                "coverage": (0.5, 0.999),
                "window": (10, 1e6),
            },
        )


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class FailureConfig:
    """Failure model (operators/ml/failure.py)."""

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    rul_cap: float = 125.0  # RUL labels are capped (piecewise-linear target), in time units
    horizon: float = 30.0  # failure_probability = P(failure within this many time units)
    ewm_halflife: float = 5.0  # samples; smoothing of each sensor
    slope_window: int = 20  # samples for each sensor's trend feature (0 or 1: no trend features)
    baseline_samples: int = 30  # first samples of a twin's life that define its own normal
    buffer_size: int = 5000  # reservoir of labelled samples (all failures so far) the model is fitted on
    max_history: int = 100_000  # samples kept per twin while waiting for a label (oldest dropped)
    keep_every: int = 1  # keep 1 in N samples for labelling (e.g. 60 for 1 Hz data: one per minute)
    random_features: int = 300  # random Fourier features per ensemble member (kernel ridge approximation)
    kernel_scale: float = 0.4  # RBF kernel width: gamma = kernel_scale / number of features (standardised)
    ridge: float = 1.0  # L2 penalty of the ridge fit
    ensemble: int = 3  # members averaged, each with its own random features
    seed: int = 0  # of the random features (the same seed, the same model)

    def __post_init__(self) -> None:
        _check(
            self,
            {
                "rul_cap": (1e-9, 1e12),
                "horizon": (1e-9, 1e12),
                "ewm_halflife": (1e-3, 1e9),
                "slope_window": (0, 1e6),
                "baseline_samples": (1, 1e9),
                "buffer_size": (1, 1e8),
                "max_history": (1, 1e9),
                "keep_every": (1, 1e9),
                "random_features": (1, 100_000),
                "kernel_scale": (1e-9, 1e6),
                "ridge": (0, 1e12),
                "ensemble": (1, 50),
            },
        )


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class OperatingPointConfig:
    """Operating-point conditioning of the anomaly detector (operators/ml/operating_point.py).

    Readings whose name matches a ``context`` glob (case-insensitive) are operating conditions
    (setpoints), not health signals: they are not scored; a change of one of them beyond
    ``tolerance`` starts a settle period in which the detector neither flags nor learns, after
    which each operating point's normal levels are checked against what was learned before.
    An empty ``context`` (or no matching reading) leaves the detector exactly as without it.
    """

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    context: tuple[str, ...] = ("*_sp", "*_sp_*", "*setpoint*")  # name globs of the context readings
    # Relative change of a context reading (of max(|value|, 1)) that starts a settle, and the width of
    # one operating point. 0: every change of a setpoint (exact values); raise it for measured contexts.
    tolerance: float = 0.0
    settle_s: float = 180.0  # seconds without flags/learning after a change (numeric times: × time_unit_s)
    # ... and longer while the health readings still move (slow thermal lags), at most this long
    settle_max_s: float = 600.0
    tail: float = 0.1  # the new level is a moving average with a half-life of tail × settle_s / 2
    degree: int = 3  # polynomial degree of the levels in the (scaled) context, fitted across operating points
    check_sigmas: float = 6.0  # a settled level further than this many spreads from the expected one is flagged
    rel_spread: float = 0.01  # minimum spread, relative to the expected level (noise-free signals)
    max_points: int = 64  # operating points remembered per twin (least recently used dropped)

    def __post_init__(self) -> None:
        _check(
            self,
            {
                "tolerance": (0, 1e6),
                "settle_s": (0, 1e9),
                "settle_max_s": (0, 1e9),
                "tail": (1e-3, 1),
                "degree": (0, 5),
                "check_sigmas": (0, 1e6),
                "rel_spread": (0, 1e3),
                "max_points": (1, 1e6),
            },
        )


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class CountersConfig:
    """Counters (energy kWh, operating hours, pieces) are scored as their rate, not their level
    (operators/ml/counters.py). Globs are matched case-insensitively against reading names, at a
    sensor's first reading; a name that matches ``levels`` and ``sensors`` is a level.
    """

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    # Take a sensor for a counter once it rose `rises` times with no fall (but resets to below half)
    # and never went below 0; false: only the `sensors` globs are counters.
    detect: bool = True
    # Name globs of counters: their rate is scored from their second reading on, any fall is a reset
    # (e.g. ["*_kwh", "*_hours", "*count*"]); no restart of the models when they are recognised.
    sensors: tuple[str, ...] = ()
    # Name globs never taken for counters: levels that may rise in steps for a long time without
    # falling (a quantised or deadband-reported temperature, a wear indicator, a tank level).
    levels: tuple[str, ...] = ()
    rises: int = 20  # rises (and no fall but resets) that make a sensor a counter when `detect` is on

    def __post_init__(self) -> None:
        _check(self, {"rises": (2, 1e9)})


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class StatesConfig:
    """Discrete states sent as numbers (a running flag 0/1 from a Modbus coil, a valve open/closed, a
    mode 0..3) are operating-point context, as booleans are: not scored (operators/ml/states.py).
    Globs are matched case-insensitively against reading names, at a sensor's first reading; a name
    that matches ``levels`` and ``sensors`` is a level.
    """

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    # Take a sensor for a state once it took 2 distinct values, all whole numbers from -1 to `values`,
    # at most `values` of them; a value that does not fit (fractional, out of range, one too many)
    # makes it a level again for good.
    detect: bool = True
    # Name globs of states: context from their first reading, whatever their values (e.g. ["*_mode", "*running*"]).
    sensors: tuple[str, ...] = ()
    # Name globs never taken for states: whole-numbered levels near 0 (a coarse vibration register in
    # mm/s), statuses that switch more often than `[ml.operating_point] settle_s` (a door).
    levels: tuple[str, ...] = ()
    values: int = 4  # the most distinct values, and the largest value, of a detected state (0/1 flags, modes 0..3)

    def __post_init__(self) -> None:
        _check(self, {"values": (2, 1e6)})


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything a twin's model needs; ``forecast``/``failure`` None turn those parts off."""

    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    forecast: ForecastConfig | None = None
    failure: FailureConfig | None = None
    time_unit_s: float = 3600.0  # timestamps are turned into this unit for RUL (default hours)
    operating_point: OperatingPointConfig = field(default_factory=OperatingPointConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    sensor_health: SensorHealthConfig = field(default_factory=SensorHealthConfig)
    counters: CountersConfig = field(default_factory=CountersConfig)
    states: StatesConfig = field(default_factory=StatesConfig)  # (last: pickled by field order)
