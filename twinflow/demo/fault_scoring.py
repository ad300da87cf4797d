"""Scoring alerts against injected faults (ground truth): detections, predictions, misses, false alarms.

One piece of code for the demo report (:mod:`twinflow.demo.report`), the demo's summary and the simulator
benchmark (``benchmarks/sim_detection.py``). Per fault of a twin, an alert of the same twin:

* **detects** it when it opens between the onset and ``end + detect_grace`` (kinds anomaly,
  condition, sensor_fault, failure, forecast_breach); its **delay** is opened − onset (≥ 0);
* **predicts** it when it is a prediction — kind ``forecast_breach`` or ``failure`` — opened in the
  ``prediction_horizon`` (default 1 h) before the onset; its **lead** is onset − opened. A
  prediction is shown as such, never as a detection;
* is **not a false alarm** when it opens between the onset and ``end + grace`` (settling after the
  fault) or is a prediction as above.

Every other alert is a **false alarm** — in particular an anomaly, condition or sensor-fault alert
opened before the onset, however close to it. A fault with neither a detection nor a prediction
is **missed**.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> at = lambda m: t0 + timedelta(minutes=m)
>>> fault = Fault("p1", "bearing_wear", at(60), at(90))
>>> rows = [AlertRow(i, "p1", k, "major", "open", at(m), None, None, "")
...         for i, k, m in (("a", "anomaly", 55), ("b", "forecast_breach", 40), ("c", "condition", 70))]
>>> ev = evaluate([fault], rows, until=at(120))
>>> r = ev.results[0]
>>> r.detected, r.delay_s, r.predicted, r.lead_s, [a.alert_id for a in ev.false_alarms]
(True, 600.0, True, 1200.0, ['a'])
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

DETECTING_KINDS = ("anomaly", "condition", "sensor_fault", "failure", "forecast_breach")
PREDICTING_KINDS = ("failure", "forecast_breach")
PREDICTION_HORIZON = timedelta(hours=1)


@dataclass(frozen=True)
class Fault:
    twin_id: str
    fault: str
    onset: datetime
    end: datetime | None


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    twin_id: str
    kind: str
    severity: str
    state: str
    opened_at: datetime
    acked_at: datetime | None
    resolved_at: datetime | None
    summary: str


@dataclass
class FaultResult:
    fault: Fault
    alerts: list[AlertRow] = field(default_factory=list)  # detections: opened at or after the onset
    predictions: list[AlertRow] = field(default_factory=list)  # forecast_breach/failure before the onset

    @property
    def detected(self) -> bool:
        return bool(self.alerts)

    @property
    def predicted(self) -> bool:
        return bool(self.predictions)

    @property
    def delay_s(self) -> float | None:
        """Seconds from the onset to the first detecting alert (None: not detected)."""
        if not self.alerts:
            return None
        return (min(a.opened_at for a in self.alerts) - self.fault.onset).total_seconds()

    @property
    def lead_s(self) -> float | None:
        """Seconds by which the first prediction preceded the onset (None: not predicted)."""
        if not self.predictions:
            return None
        return (self.fault.onset - min(a.opened_at for a in self.predictions)).total_seconds()


@dataclass
class Evaluation:
    results: list[FaultResult]
    false_alarms: list[AlertRow]
    alerts: list[AlertRow]

    @property
    def summary(self) -> dict[str, Any]:
        delays = [r.delay_s for r in self.results if r.delay_s is not None]
        leads = [r.lead_s for r in self.results if r.lead_s is not None]
        true_alerts = len(self.alerts) - len(self.false_alarms)
        return {
            "faults": len(self.results),
            "detected": sum(r.detected for r in self.results),
            "predicted": sum(r.predicted for r in self.results),
            "missed": sum(not (r.detected or r.predicted) for r in self.results),
            "alerts": len(self.alerts),
            "false_alarms": len(self.false_alarms),
            "precision": round(true_alerts / len(self.alerts), 4) if self.alerts else None,
            "recall": round(sum(r.detected for r in self.results) / len(self.results), 4) if self.results else None,
            "median_delay_s": statistics.median(delays) if delays else None,
            "median_lead_s": statistics.median(leads) if leads else None,
        }


def evaluate(
    faults: list[Fault],
    alerts: list[AlertRow],
    *,
    until: datetime,
    grace: timedelta = timedelta(minutes=10),
    kinds: tuple[str, ...] = DETECTING_KINDS,
    detect_grace: timedelta | None = None,
    prediction_horizon: timedelta = PREDICTION_HORIZON,
) -> Evaluation:
    """Match alerts to faults (see the module docs).

    ``detect_grace`` (default: ``grace``) lets a benchmark forgive the settling after a fault's end
    without counting it as a detection (e.g. ``timedelta(0)``).
    """
    considered = [a for a in alerts if a.kind in kinds]
    detect_hi_extra = grace if detect_grace is None else detect_grace
    results = []
    matched: set[str] = set()
    for f in faults:
        end = f.end or until
        mine = [a for a in considered if a.twin_id == f.twin_id]
        after = [a for a in mine if f.onset <= a.opened_at <= end + grace]
        predictions = [
            a for a in mine if a.kind in PREDICTING_KINDS and f.onset - prediction_horizon <= a.opened_at < f.onset
        ]
        matched |= {a.alert_id for a in after} | {a.alert_id for a in predictions}
        results.append(FaultResult(f, [a for a in after if a.opened_at <= end + detect_hi_extra], predictions))
    false_alarms = [a for a in considered if a.alert_id not in matched]
    return Evaluation(results, false_alarms, considered)


def episodes(flagged: Sequence[float], gap: float) -> list[tuple[float, float]]:
    """(first, last) of each run of flagged times (sorted) with no hole longer than ``gap``.

    >>> episodes([1, 2, 3, 10, 11, 30], gap=2)
    [(1, 3), (10, 11), (30, 30)]
    """
    out: list[tuple[float, float]] = []
    for t in flagged:
        if out and t - out[-1][1] <= gap:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out
