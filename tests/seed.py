"""A small, known fleet in the database for the query, dashboard and report tests.

Three twins over the last two hours (one sample a minute, ending now):

* ``f`` (faulty): vibration fault from -60 min to -30 min → anomaly scores 0.92 at threshold 0.5
  (vibration 70 %), health 0.2 (vibration),
  failure predictions from the onset on (RUL 3 h, p 0.7), a temperature forecast that breaches
  its limit in one hour; alerts come from the real operator: anomaly (acknowledged 10 min after
  opening, resolved after recovery) and failure (still open, critical);
* ``h`` (healthy): quiet, except a 5-minute anomaly spike at -20 min with no fault behind it
  (a false alarm); the fault schedule lists a fault at -100 min that raised nothing (missed);
* ``d`` (desync): 10 % of its samples are 'uncertain'; a desync escalation at -40 min, its alert
  resolved by a person at -30 min;
  reconciliation versions in ``twin_state_history``, written by the twin sink (read as
  ``twin_sync_quality``; :data:`SYNC_QUALITY`: desynced at -40 and -35, synchronized again at -30 and
  -10, plus one version before the two hours); ``f`` and ``h`` have none.

The scores and predictions above are the built-in models' (``twinflow-t2``). A model of your own
(:data:`OWN_MODEL`) also scores ``f`` at the same instants, always anomalous (0.99), and predicts
its failure within the hour, and forecasts a breach: the queries and panels, which read the built-in models' rows, must
not count them (docs/sql.md, "Several models per twin"); they raise no alert here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.cleanup import delete_rows
from connectors.postgres.alert_sinks import AlertSink, ModelOutputSink
from connectors.postgres.telemetry_sink import TelemetrySink
from connectors.postgres.twin_sink import TwinSink
from operators.alerts.lifecycle import TwinAlerts
from operators.alerts.rules import AlertRules, KindRule
from operators.records.alerts import (
    AlertAction,
    AnomalyScore,
    DesyncEscalation,
    FailurePrediction,
    ForecastPoint,
)
from operators.records.twin import encode
from operators.telemetry.ingest import TelemetryRow
from operators.twin.state import StateChange

OWN_MODEL = "vib-lstm"
RULES = AlertRules(anomaly=KindRule(120, 300), escalate_after_s=0)
MINUTES = 120
# twin d's reconciliation versions: (minute, version, status, consistency_score, sync_latency_ms, conflicts)
SYNC_QUALITY = [
    (-130, 1, "desynced", 0.0, None, 3),  # before the two hours: outside the queried range
    (-40, 2, "desynced", 0.5, None, 1),
    (-35, 3, "desynced", 0.25, None, 2),
    (-30, 4, "synchronized", 1.0, 1500.0, 0),
    (-10, 5, "synchronized", 1.0, 250.0, 0),
]


@dataclass
class Fleet:
    f: str
    h: str
    d: str
    end: datetime
    alerts: list = field(default_factory=list)

    @property
    def twins(self) -> list[str]:
        return [self.f, self.h, self.d]

    def at(self, minutes: float) -> datetime:
        return self.end + timedelta(minutes=minutes)

    def fault_schedule(self, path: Path) -> Path:
        """The simulator's ground truth for this fleet, in the documented JSON format."""
        faults = [
            {"twin_id": self.f, "fault": "bearing_wear", "onset": self.at(-60), "end": self.at(-30)},
            {"twin_id": self.h, "fault": "seal_leak", "onset": self.at(-100), "end": self.at(-90)},
        ]
        path.write_text(json.dumps({"faults": faults}, default=lambda t: t.isoformat()))
        return path


def seed(conninfo: str, uid: str) -> Fleet:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    fl = Fleet(f"seed-f-{uid}", f"seed-h-{uid}", f"seed-d-{uid}", end)
    rows, scores, failures, forecasts, own = [], [], [], [], []
    for i in range(-MINUTES, 0):
        ts = fl.at(i)
        fault = -60 <= i < -30
        spike = -20 <= i < -15
        for twin in fl.twins:
            quality = 1 if twin == fl.d and i % 10 == 0 else 0
            vib = 9.0 if (twin == fl.f and fault) else 2.0
            for sensor, value in (("temp_c", 60.0 + i / 10), ("vibration", vib), ("rpm", 1450.0)):
                rows.append(TelemetryRow(twin, sensor, ts, value, i + MINUTES, quality, "seed"))
        f_score = 0.92 if fault else 0.1
        f_contrib = {"vibration": 0.7, "temp_c": 0.2, "rpm": 0.1} if fault else {"temp_c": 0.5, "rpm": 0.5}
        f_health = 0.2 if fault else 0.97  # the condition monitor: vibration far from its reference
        f_drivers = {"vibration": 0.2} if fault else {}
        scores.append(
            AnomalyScore(
                fl.f, ts, f_score, 0.5, fault, f_contrib, "twinflow-t2", "novelty" if fault else "", f_health, f_drivers
            )
        )
        own.append(AnomalyScore(fl.f, ts, 0.99, 0.5, True, {"vibration": 1.0}, OWN_MODEL, health=0.05))
        h_score = 0.76 if spike else 0.1
        scores.append(AnomalyScore(fl.h, ts, h_score, 0.5, spike, {"rpm": 0.8, "temp_c": 0.2}, "twinflow-t2", "", 0.99))
        if i % 10 == 0:
            failures.append(FailurePrediction(fl.h, ts, 500 * 3600.0, 0.01, 0.1, 72 * 3600.0))
            if i >= -60:
                failures.append(FailurePrediction(fl.f, ts, 3 * 3600.0, 0.7, 0.2, 72 * 3600.0))
            else:
                failures.append(FailurePrediction(fl.f, ts, 500 * 3600.0, 0.01, 0.1, 72 * 3600.0))
            own.append(FailurePrediction(fl.f, ts, 1800.0, 0.99, 0.1, 72 * 3600.0, model=OWN_MODEL))
    for k in range(0, 121, 10):  # forecast made at -1 min for the next two hours
        made = fl.at(-1)
        target = fl.at(k)
        pred = 80.0 + k / 6
        forecasts.append(
            ForecastPoint(fl.f, "temp_c", made, target, pred, pred - 3, pred + 3, 90.0, breach_at=fl.at(60))
        )
        forecasts.append(ForecastPoint(fl.h, "temp_c", made, target, 60.0, 58.0, 62.0, 90.0, breach_at=None))
        own.append(ForecastPoint(fl.f, "temp_c", made, target, 200.0, 190.0, 210.0, 90.0, made, OWN_MODEL))

    # alerts from the real operator, in event-time order
    engines = {t: TwinAlerts(t, RULES) for t in fl.twins}
    inputs = sorted([*scores, *failures], key=lambda r: r.ts)
    desync = [DesyncEscalation(fl.d, fl.at(-40))]
    for rec in sorted([*inputs, *desync], key=lambda r: r.ts):
        for alert in engines[rec.twin_id].apply(rec):
            fl.alerts.append(alert)
            if alert.twin_id == fl.f and alert.kind == "anomaly" and alert.event == "opened":
                ack = AlertAction(alert.alert_id, fl.f, "ack", "alice", alert.opened_at + timedelta(minutes=10))
                fl.alerts += engines[fl.f].apply(ack)
            if alert.twin_id == fl.d and alert.event == "opened":  # no end of an escalation comes: a person
                resolve = AlertAction(alert.alert_id, fl.d, "resolve", "ops", fl.at(-30))
                fl.alerts += engines[fl.d].apply(resolve)

    for sink, records in (
        (TelemetrySink(conninfo), rows),
        (ModelOutputSink(conninfo), [*scores, *failures, *forecasts, *own]),
        (AlertSink(conninfo), fl.alerts),
        (TwinSink(conninfo), [version(fl.d, fl.at(m), *rest) for m, *rest in SYNC_QUALITY]),
    ):
        writer = sink.open()
        writer.write(records)
        writer.close()
    return fl


def version(
    twin: str, at: datetime, version: int, status: str, score: float, latency_ms: float | None, conflicts: int
) -> StateChange:
    """A twin state version with the given sync quality (``conflicts`` parameters out of sync)."""
    names = [f"p{i}" for i in range(conflicts)]
    doc = {
        "version": version, "status": status, "mode": "normal", "learn": True,
        "reported": {n: {"value": 1.0, "ts": at.isoformat()} for n in names}, "desired": {}, "delta": {},
        "conflicts": names, "commands": {}, "consistency_score": score, "sync_latency_ms": latency_ms,
        "last_sync_time": None, "desync_since": None, "change": {"cause": "seed"},
    }  # fmt: skip
    return StateChange(twin, version, at, doc, encode(doc))


def delete(conninfo: str, fl: Fleet) -> None:
    """Remove the seeded rows again (the tables are shared with other tests)."""
    tables = ("telemetry", "anomaly_scores", "failure_predictions", "forecasts", "alerts", "alert_events",
              "twin_state_history")  # fmt: skip
    with psycopg.connect(conninfo) as db, db.transaction():
        for table in tables:
            delete_rows(db, table, sql.SQL("twin_id = ANY(%s)"), (fl.twins,))
