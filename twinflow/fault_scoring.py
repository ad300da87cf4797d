"""Scoring detections against injected faults (ground truth): lead time, missed faults, false alarms.

One piece of code for the demo report (:mod:`twinflow.report`) and the simulator benchmark
(``benchmarks/sim_detection.py``). An alert (kinds anomaly, failure, forecast_breach by default)
*detects* a fault of the same twin when it opens between ``onset - max_lead`` and
``end + grace``; per fault the **lead time** is onset − first matching alert (negative = detection
delay); faults without a matching alert are **missed**; alerts matching no fault are **false alarms**.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

DETECTING_KINDS = ("anomaly", "failure", "forecast_breach")


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
    alerts: list[AlertRow] = field(default_factory=list)

    @property
    def detected(self) -> bool:
        return bool(self.alerts)

    @property
    def lead_s(self) -> float | None:
        """Onset minus the first matching alert's opening (positive: warned before the onset)."""
        if not self.alerts:
            return None
        return (self.fault.onset - min(a.opened_at for a in self.alerts)).total_seconds()


@dataclass
class Evaluation:
    results: list[FaultResult]
    false_alarms: list[AlertRow]
    alerts: list[AlertRow]

    @property
    def summary(self) -> dict[str, Any]:
        leads = [r.lead_s for r in self.results if r.lead_s is not None]
        matched = {a.alert_id for r in self.results for a in r.alerts}
        return {
            "faults": len(self.results),
            "detected": sum(r.detected for r in self.results),
            "missed": sum(not r.detected for r in self.results),
            "alerts": len(self.alerts),
            "false_alarms": len(self.false_alarms),
            "precision": round(len(matched) / len(self.alerts), 4) if self.alerts else None,
            "recall": round(sum(r.detected for r in self.results) / len(self.results), 4) if self.results else None,
            "median_lead_s": statistics.median(leads) if leads else None,
        }


def evaluate(
    faults: list[Fault],
    alerts: list[AlertRow],
    *,
    until: datetime,
    max_lead: timedelta = timedelta(hours=24),
    grace: timedelta = timedelta(minutes=10),
    kinds: tuple[str, ...] = DETECTING_KINDS,
    detect_grace: timedelta | None = None,
) -> Evaluation:
    """Match alerts to faults (see the module docs).

    An alert opened between ``onset - max_lead`` and ``end + grace`` is never a false alarm; it
    *detects* the fault when it opened by ``end + detect_grace`` (default: ``grace``), so a
    benchmark can forgive the settling after a fault without counting it as a detection.
    """
    considered = [a for a in alerts if a.kind in kinds]
    results = []
    matched: set[str] = set()
    for f in faults:
        end = f.end or until
        lo, hi = f.onset - max_lead, end + grace
        detect_hi = end + (grace if detect_grace is None else detect_grace)
        near = [a for a in considered if a.twin_id == f.twin_id and lo <= a.opened_at <= hi]
        matched |= {a.alert_id for a in near}
        results.append(FaultResult(f, [a for a in near if a.opened_at <= detect_hi]))
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
