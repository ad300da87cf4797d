"""The records the live models step publishes (:mod:`operators.records.alerts`): a twin's
anomaly scores, forecast points with their limit breaches, silent-sensor faults, and the fleet's
failure predictions.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from operators.ml.config import FailureConfig
from operators.ml.failure import FleetFailureModel
from operators.ml.fleet_step import FleetItem, FleetPrediction
from operators.ml.forecast import SensorForecast
from operators.ml.live_state import LiveModelConfig
from operators.ml.scoring import Score
from operators.ml.sensor_limits import breach_at, limit_for
from operators.ml.twin_model import TwinModel
from operators.records.alerts import AnomalyScore, FailurePrediction, ForecastPoint

Output = AnomalyScore | ForecastPoint | FleetItem
"""A record of a twin's step (the fleet items go on to :func:`~operators.ml.live_step.fleet_step`)."""


def anomaly_record(twin_id: str, ts: datetime, score: Score, cfg: LiveModelConfig) -> AnomalyScore:
    """A scored sample's record."""
    return AnomalyScore(
        twin_id=twin_id,
        ts=ts,
        score=score.anomaly_score,
        threshold=cfg.model.anomaly.threshold,
        is_anomaly=score.is_anomaly,
        contributions=score.contributions,
        model=cfg.model_name,
        kind=score.kind,
        health=score.health,
        drivers=score.drivers,
        sensor_faults=score.sensor_faults,
    )


def forecast_records(
    published: tuple[dict[str, SensorForecast], dict[str, int]],
    model: TwinModel,
    ts: datetime,
    score: Score,
    held: dict[str, float],
    period_s: float,
    samples: int,
    cfg: LiveModelConfig,
    twin_id: str,
    records: list[Output],
) -> None:
    """A reading's forecast points (its forecasts and each sensor's samples seen then)."""
    forecasts, seen = published
    ready = not score.warming_up and samples >= cfg.model.anomaly.warmup
    isfinite = math.isfinite
    horizon, ahead = None, timedelta(0)  # (every sensor has the same horizon: one timedelta per reading)
    for sensor, fc in forecasts.items():
        if not (isfinite(fc.value) and isfinite(fc.low) and isfinite(fc.high)):
            continue
        if fc.horizon != horizon:
            horizon, ahead = fc.horizon, timedelta(seconds=fc.horizon * period_s)
        target_ts = ts + ahead
        limit, breach = None, None
        rule = limit_for(cfg.limits, twin_id, sensor) if cfg.limits else None
        if rule is not None:
            # Until the models have seen enough data (warm-up, and the forecaster's own interval
            # calibrated) the forecasts are not trusted — a young Holt trend extrapolates start-up
            # transients: only a reading already outside the band counts.
            now = held[sensor]
            trusted = ready and model.forecast_ready(sensor, seen[sensor]) and sensor not in score.sensor_faults
            predicted = fc.value if trusted else now
            limit, breach = breach_at(rule, now=now, predicted=predicted, ts=ts, target_ts=target_ts)
        records.append(
            ForecastPoint(
                twin_id=twin_id,
                sensor=sensor,
                ts=ts,
                target_ts=target_ts,
                predicted=fc.value,
                lower=fc.low,
                upper=fc.high,
                limit=limit,
                breach_at=breach,
            )
        )


def silence_record(twin_id: str, ts: datetime, faults: dict[str, str], cfg: LiveModelConfig) -> AnomalyScore:
    """The sensor faults of sensors (or a whole twin) that went silent, published at once by a timer."""
    return AnomalyScore(
        twin_id=twin_id,
        ts=ts,
        score=0.0,
        threshold=cfg.model.anomaly.threshold,
        is_anomaly=False,
        contributions={s: 1.0 / len(faults) for s in faults},
        model=cfg.model_name,
        kind="sensor_fault",
        sensor_faults=faults,
    )


def failure_records(
    fleet: FleetFailureModel,
    predictions: list[FleetPrediction],
    fleet_name: str,
    failure: FailureConfig,
    cfg: LiveModelConfig,
) -> list[FailurePrediction]:
    """The fleet model's predictions in seconds (those with a finite RUL, bounds and probability)."""
    unit = cfg.model.time_unit_s
    records = []
    for p in predictions:
        pred = p.prediction
        if not all(math.isfinite(v) for v in (pred.rul, pred.rul_low, pred.rul_high, pred.failure_probability)):
            continue
        records.append(
            FailurePrediction(
                twin_id=p.twin_id,
                ts=p.ts,
                rul_s=pred.rul * unit,
                failure_probability=pred.failure_probability,
                uncertainty=fleet.sigma(pred.rul) * unit,
                horizon_s=failure.horizon * unit,
                rul_low_s=pred.rul_low * unit,
                rul_high_s=pred.rul_high * unit,
                model=f"{cfg.model_name}-rul:{fleet_name}",
                model_version=fleet.n_failures,
            )
        )
    return records
