"""Parameters of the online models (plain dataclasses, no heavy imports; used by settings).

Defaults were chosen on SKAB (anomaly) and C-MAPSS FD001 (failure) and kept general; see docs/ml.md.
Units: ``samples`` means readings of one twin; ``time units`` are the time column's own units for
numbers (e.g. cycles) and ``time_unit_s`` seconds (default hours) for timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from operators.strict import STRICT


def _check(obj: object, rules: dict[str, tuple[float, float]]) -> None:
    for name, (lo, hi) in rules.items():
        value = getattr(obj, name)
        if not lo <= value <= hi:
            raise ValueError(f"{type(obj).__name__}.{name}={value!r} must be within [{lo}, {hi}]")


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """Anomaly detector (operators/anomaly.py)."""

    __pydantic_config__ = STRICT  # typos in the [ml] settings are errors, not ignored

    warmup: int = 400  # samples learned before scoring starts (never flagged)
    window: int = 10  # samples in the short moving average
    baseline_halflife: float = 800.0  # samples; how fast the baseline follows slow drift
    shrinkage: float = 0.2  # covariance shrinkage towards its diagonal (0 = none, 1 = diagonal)
    quantile: float = 0.99  # quantile of recent normal T² used for calibration
    threshold_factor: float = 5.0  # threshold = factor · quantile
    exit_ratio: float = 0.7  # hysteresis: an alarm ends when score < exit_ratio ...
    exit_after: int = 1  # ... for this many consecutive samples (fills short gaps within an anomaly)
    enter_after: int = 1  # consecutive exceedances needed to raise an alarm (blip filter)
    calibration_size: int = 1000  # recent normal deviations kept for covariance and threshold
    refresh_every: int = 50  # learned samples between covariance/threshold refreshes
    max_alarm: int = 3600  # samples of continuous alarm after which the regime is accepted as new
    drift_delta: float = 0.002  # ADWIN confidence on the log-score of normal points

    def __post_init__(self) -> None:
        _check(
            self,
            {
                "warmup": (1, 1e9),
                "window": (1, 1e6),
                "baseline_halflife": (1, 1e12),
                "shrinkage": (0, 1),
                "quantile": (0.5, 1),
                "threshold_factor": (1e-6, 1e6),
                "exit_ratio": (0, 1),
                "exit_after": (1, 1e6),
                "enter_after": (1, 1e6),
                "calibration_size": (10, 1e7),
                "refresh_every": (1, 1e9),
                "max_alarm": (1, 1e12),
                "drift_delta": (1e-12, 1),
            },
        )


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """Per-sensor forecasts (operators/forecast.py)."""

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


@dataclass(frozen=True, slots=True)
class FailureConfig:
    """Failure model (operators/failure.py)."""

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
    seed: int = 0

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


@dataclass(frozen=True, slots=True)
class OperatingPointConfig:
    """Operating-point conditioning of the anomaly detector (operators/operating_point.py).

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
    tail: float = 0.1  # last fraction of the settle period whose mean is the new operating point's level
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
                "tail": (1e-3, 1),
                "degree": (0, 5),
                "check_sigmas": (0, 1e6),
                "rel_spread": (0, 1e3),
                "max_points": (1, 1e6),
            },
        )


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything a twin's model needs; ``forecast``/``failure`` None turn those parts off."""

    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    forecast: ForecastConfig | None = None
    failure: FailureConfig | None = None
    time_unit_s: float = 3600.0  # timestamps are turned into this unit for RUL (default hours)
    operating_point: OperatingPointConfig = field(default_factory=OperatingPointConfig)


def as_dict(cfg: object) -> dict[str, object]:
    """A config as a plain dict (for pickled state and logs)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}  # type: ignore[arg-type]
