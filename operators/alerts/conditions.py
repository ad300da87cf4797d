"""Each kind's condition, judged from one input record.

A condition has three levels: *above* (opens an alert), *below* (clears it) and the hysteresis
band between (nothing changes). Per record and kind this module says where the condition is, how
severe it is when above, and which facts the record adds to the evidence; the timing (how long
above opens, how long below resolves) is :mod:`operators.alerts.lifecycle`'s.

* **anomaly**: score over threshold; clears below ``threshold × anomaly_clear_ratio``;
* **condition**: the health index below ``health_open``; clears from ``health_clear``;
* **sensor_fault**: any sensor with a fault; clears when none has;
* **failure**: RUL under ``rul_open_s`` or failure probability over ``probability_open``;
* **forecast_breach**: a limit breach predicted within ``breach_horizon_s``, any sensor;
* **desync**: a desync escalation from the twin flow (above), cleared when the twin is synchronized again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from operators.alerts.rules import AlertRules
from operators.records.alerts import (
    SEVERITIES,
    AnomalyScore,
    DesyncEscalation,
    FailurePrediction,
    ForecastPoint,
    Kind,
    Severity,
)

ABOVE, BAND, BELOW = 1, 0, -1

Facts = Callable[[dict[str, Any]], None]
"""Adds a record's facts to the kind's evidence of the current run (a dict it may update)."""


class Observation(NamedTuple):
    """One record's verdict on a kind's condition: its level, its severity (``None`` unless above)
    and how it adds to the evidence (a tuple: one is made per record and kind)."""

    kind: Kind
    ts: datetime
    level: int
    severity: Severity | None
    facts: Facts


def max_severity(a: Severity, b: Severity) -> Severity:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


def next_severity(s: Severity) -> Severity:
    """One step up (an escalation); critical stays critical."""
    return SEVERITIES[min(SEVERITIES.index(s) + 1, len(SEVERITIES) - 1)]


def lead_severity(lead_s: float, rules: AlertRules) -> Severity:
    """Severity from the time left (to failure, to a limit breach)."""
    if lead_s <= rules.lead_critical_s:
        return "critical"
    return "major" if lead_s <= rules.lead_major_s else "minor"


def anomaly(rec: AnomalyScore, rules: AlertRules) -> Observation:
    """The fast time scale: the anomaly score against its threshold."""
    if rec.is_anomaly or rec.score >= rec.threshold:
        level = ABOVE
    elif rec.score < rec.threshold * rules.anomaly_clear_ratio:
        level = BELOW
    else:
        level = BAND
    ratio = rec.score / rec.threshold if rec.threshold > 0 else float("inf")
    sev: Severity = (
        "critical"
        if ratio >= rules.anomaly_critical_ratio
        else "major"
        if ratio >= rules.anomaly_major_ratio
        else "minor"
    )

    def facts(f: dict[str, Any]) -> None:
        if rec.score >= f.get("peak_score", float("-inf")):
            f["peak_score"] = rec.score
            f["peak_at"] = rec.ts.isoformat()
        f["threshold"] = rec.threshold
        f["last_score"] = rec.score
        if rec.contributions:
            acc = f.setdefault("_contrib", {})
            for s, share in rec.contributions.items():
                acc[s] = acc.get(s, 0.0) + share

    return Observation("anomaly", rec.ts, level, sev if level == ABOVE else None, facts)


def condition(rec: AnomalyScore, rules: AlertRules) -> Observation:
    """The slow time scale: the twin's health against its healthy reference (``rec.health`` set)."""
    h = rec.health
    assert h is not None
    level = ABOVE if h < rules.health_open else BELOW if h >= rules.health_clear else BAND
    sev: Severity = "critical" if h < rules.health_critical else "major" if h < rules.health_major else "minor"

    def facts(f: dict[str, Any]) -> None:
        if h <= f.get("min_health", 2.0):
            f["min_health"] = h
            f["min_health_at"] = rec.ts.isoformat()
        f["health"] = h
        if rec.drivers:
            f["drivers"] = dict(rec.drivers)
            acc = f.setdefault("_contrib", {})
            for s, sh in rec.drivers.items():
                acc[s] = acc.get(s, 0.0) + (1.0 - sh)

    return Observation("condition", rec.ts, level, sev if level == ABOVE else None, facts)


def sensor_fault(rec: AnomalyScore) -> Observation:
    """Sensors that lie (frozen, out of range, spiking, quantised, silent), by name."""
    level = ABOVE if rec.sensor_faults else BELOW
    serious = any(kind in ("out_of_range", "silent") for kind in rec.sensor_faults.values())
    sev: Severity = "major" if serious else "minor"

    def facts(f: dict[str, Any]) -> None:
        faults = f.setdefault("sensor_faults", {})
        faults.update(rec.sensor_faults)
        acc = f.setdefault("_contrib", {})
        for s in rec.sensor_faults:
            acc[s] = acc.get(s, 0.0) + 1.0

    return Observation("sensor_fault", rec.ts, level, sev if level == ABOVE else None, facts)


def failure(rec: FailurePrediction, rules: AlertRules) -> Observation:
    """Remaining useful life and failure probability against their thresholds."""
    if rec.rul_s <= rules.rul_open_s or rec.failure_probability >= rules.probability_open:
        level = ABOVE
    elif (
        rec.rul_s > rules.rul_open_s * rules.failure_clear_factor
        and rec.failure_probability < rules.probability_open / rules.failure_clear_factor
    ):
        level = BELOW
    else:
        level = BAND
    sev = lead_severity(rec.rul_s, rules)
    if rec.failure_probability >= 0.9:
        sev = max_severity(sev, "major")

    def facts(f: dict[str, Any]) -> None:
        f["min_rul_s"] = min(rec.rul_s, f.get("min_rul_s", float("inf")))
        f["max_failure_probability"] = max(rec.failure_probability, f.get("max_failure_probability", 0.0))

    return Observation("failure", rec.ts, level, sev if level == ABOVE else None, facts)


def forecast_breach(forecasts: dict[str, ForecastPoint], rules: AlertRules) -> Observation:
    """The latest forecast of each sensor (``forecasts``, sensor → point): a breach within the horizon."""
    levels, leads = [], []
    for fp in forecasts.values():
        lead = (fp.breach_at - fp.ts).total_seconds() if fp.breach_at is not None else None
        if lead is not None and lead <= rules.breach_horizon_s:
            levels.append(ABOVE)
            leads.append(max(lead, 0.0))
        elif lead is None or lead > rules.breach_horizon_s * rules.breach_clear_factor:
            levels.append(BELOW)
        else:
            levels.append(BAND)
    level = ABOVE if ABOVE in levels else BELOW if all(lv == BELOW for lv in levels) else BAND
    sev = lead_severity(min(leads), rules) if leads else None

    def facts(f: dict[str, Any]) -> None:
        breaches = f.setdefault("breaches", {})
        for fp in forecasts.values():
            if fp.breach_at is not None and (fp.breach_at - fp.ts).total_seconds() <= rules.breach_horizon_s:
                breaches[fp.sensor] = {
                    "sensor": fp.sensor,
                    "breach_at": fp.breach_at.isoformat(),
                    "lead_s": max((fp.breach_at - fp.ts).total_seconds(), 0.0),
                    "predicted": fp.predicted,
                    "lower": fp.lower,
                    "upper": fp.upper,
                    "limit": fp.limit,
                    "forecast_at": fp.ts.isoformat(),
                }

    # sensors' forecasts interleave: the kind's time is the newest forecast of any sensor
    newest = max(fp.ts for fp in forecasts.values())
    return Observation("forecast_breach", newest, level, sev, facts)


def desync(rec: DesyncEscalation) -> Observation:
    """A twin desynced longer than its ``max_desync_time_s``: major, with the reconciler's detail;
    synchronized again (``in_sync``): the condition clears."""
    kind = rec.alert  # desync, or device_offline (the device could not be reached, docs/alerts.md)
    if rec.in_sync:
        return Observation(kind, rec.ts, BELOW, None, lambda f: None)

    def facts(f: dict[str, Any]) -> None:
        f["desync" if kind == "desync" else "connectivity"] = rec.detail

    return Observation(kind, rec.ts, ABOVE, "major", facts)
