"""Alerts and model outputs in PostgreSQL/TimescaleDB: idempotent writes and the CLI's reads.

* ``alerts``: one row per alert, upserted by (alert_id, opened_at); a newer ``version`` wins,
  the state only moves forward (open → acknowledged → resolved) and ack/resolve facts once
  set are kept, so replays and out-of-order writes (flow vs. CLI) never roll an alert back.
* ``alert_events``: every version, ``ON CONFLICT DO NOTHING``.
* ``anomaly_scores``, ``forecasts``, ``failure_predictions``: upsert on their identity.

Connection failures are retried with backoff and a new connection (connectors/retry.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from connectors.postgres.session import Session
from operators.records.alerts import Alert, AnomalyScore, FailurePrediction, ForecastPoint

log = logging.getLogger(__name__)

_RANK = "array_position(ARRAY['open','acknowledged','resolved'], {})"
# A version that re-annunciates the alarm (higher `reopened`) resets it to unacknowledged; otherwise
# the state only moves forward and ack/resolve facts once set are kept.
_NEWER_CYCLE = "EXCLUDED.reopened > alerts.reopened"
UPSERT_ALERT = f"""
INSERT INTO alerts (alert_id, twin_id, kind, state, severity, version, opened_at, acked_at, acked_by,
                    resolved_at, resolved_by, escalation_level, flapping, summary, evidence, updated_at,
                    isa_state, condition, shelved_until, shelved_by, shelve_reason, suppressed_by,
                    out_of_service, standing, reopened)
VALUES (%(alert_id)s, %(twin_id)s, %(kind)s, %(state)s, %(severity)s, %(version)s, %(opened_at)s,
        %(acked_at)s, %(acked_by)s, %(resolved_at)s, %(resolved_by)s, %(escalation_level)s,
        %(flapping)s, %(summary)s, %(evidence)s, %(updated_at)s, %(isa_state)s, %(condition)s,
        %(shelved_until)s, %(shelved_by)s, %(shelve_reason)s, %(suppressed_by)s, %(out_of_service)s,
        %(standing)s, %(reopened)s)
ON CONFLICT (alert_id, opened_at) DO UPDATE SET
    state = CASE WHEN {_NEWER_CYCLE} OR {_RANK.format("EXCLUDED.state")} >= {_RANK.format("alerts.state")}
                 THEN EXCLUDED.state ELSE alerts.state END,
    isa_state = CASE WHEN {_NEWER_CYCLE} OR {_RANK.format("EXCLUDED.state")} >= {_RANK.format("alerts.state")}
                 THEN EXCLUDED.isa_state ELSE alerts.isa_state END,
    severity = EXCLUDED.severity,
    version = EXCLUDED.version,
    acked_at = CASE WHEN {_NEWER_CYCLE} THEN EXCLUDED.acked_at ELSE coalesce(alerts.acked_at, EXCLUDED.acked_at) END,
    acked_by = CASE WHEN {_NEWER_CYCLE} THEN EXCLUDED.acked_by ELSE coalesce(alerts.acked_by, EXCLUDED.acked_by) END,
    condition = EXCLUDED.condition,
    shelved_until = EXCLUDED.shelved_until,
    shelved_by = EXCLUDED.shelved_by,
    shelve_reason = EXCLUDED.shelve_reason,
    suppressed_by = EXCLUDED.suppressed_by,
    out_of_service = EXCLUDED.out_of_service,
    standing = EXCLUDED.standing,
    reopened = greatest(alerts.reopened, EXCLUDED.reopened),
    resolved_at = coalesce(alerts.resolved_at, EXCLUDED.resolved_at),
    resolved_by = coalesce(alerts.resolved_by, EXCLUDED.resolved_by),
    escalation_level = greatest(alerts.escalation_level, EXCLUDED.escalation_level),
    flapping = alerts.flapping OR EXCLUDED.flapping,
    summary = EXCLUDED.summary,
    evidence = EXCLUDED.evidence,
    updated_at = greatest(alerts.updated_at, EXCLUDED.updated_at)
WHERE alerts.version < EXCLUDED.version
"""
INSERT_EVENT = """
INSERT INTO alert_events (alert_id, version, ts, twin_id, kind, event, state, severity, actor, evidence,
                          isa_state)
VALUES (%(alert_id)s, %(version)s, %(updated_at)s, %(twin_id)s, %(kind)s, %(event)s, %(state)s,
        %(severity)s, %(actor)s, %(evidence)s, %(isa_state)s)
ON CONFLICT DO NOTHING
"""
UPSERT_SCORE = """
INSERT INTO anomaly_scores (twin_id, ts, score, threshold, is_anomaly, contributions, model, kind, health,
    drivers, sensor_faults)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (twin_id, ts) DO UPDATE SET score = EXCLUDED.score, threshold = EXCLUDED.threshold,
    is_anomaly = EXCLUDED.is_anomaly, contributions = EXCLUDED.contributions, model = EXCLUDED.model,
    kind = EXCLUDED.kind, health = EXCLUDED.health, drivers = EXCLUDED.drivers,
    sensor_faults = EXCLUDED.sensor_faults
"""
UPSERT_FORECAST = """
INSERT INTO forecasts (twin_id, sensor, ts, target_ts, predicted, lower, upper, limit_value, breach_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (twin_id, sensor, ts, target_ts) DO UPDATE SET predicted = EXCLUDED.predicted,
    lower = EXCLUDED.lower, upper = EXCLUDED.upper, limit_value = EXCLUDED.limit_value,
    breach_at = EXCLUDED.breach_at
"""
UPSERT_FAILURE = """
INSERT INTO failure_predictions (twin_id, ts, rul_s, failure_probability, uncertainty, horizon_s)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (twin_id, ts) DO UPDATE SET rul_s = EXCLUDED.rul_s,
    failure_probability = EXCLUDED.failure_probability, uncertainty = EXCLUDED.uncertainty,
    horizon_s = EXCLUDED.horizon_s
"""


ALERT_COLUMNS = (
    "alert_id, twin_id, kind, state, severity, version, opened_at, acked_at, acked_by, resolved_at, resolved_by,"
    " escalation_level, flapping, summary, evidence, updated_at, isa_state, condition, shelved_until, shelved_by,"
    " shelve_reason, suppressed_by, out_of_service, standing, reopened"
)
# The row's immediate update per action (SET …, then WHERE: which rows it applies to).
_ISA_AGAIN = (
    "isa_state = CASE WHEN out_of_service THEN 'out_of_service' WHEN suppressed_by IS NOT NULL THEN 'suppressed'"
    " WHEN state = 'acknowledged' THEN 'ack_' || condition ELSE 'unack_' || condition END"
)
_ACTION_SQL = {
    "ack": "state = 'acknowledged', acked_at = %(ts)s, acked_by = %(by)s,"
    " isa_state = CASE WHEN isa_state = 'unack_active' THEN 'ack_active' ELSE isa_state END"
    " WHERE state = 'open' AND condition = 'active'",
    "resolve": "state = 'resolved', resolved_at = %(ts)s, resolved_by = %(by)s, isa_state = 'normal',"
    " shelved_until = NULL, shelved_by = NULL, shelve_reason = '' WHERE state <> 'resolved'",
    "shelve": "shelved_until = %(until)s, shelved_by = %(by)s, shelve_reason = %(note)s,"
    " isa_state = CASE WHEN out_of_service THEN 'out_of_service' ELSE 'shelved' END WHERE state <> 'resolved'",
    "unshelve": "shelved_until = NULL, shelved_by = NULL, shelve_reason = '',"
    " state = CASE WHEN condition = 'active' AND suppressed_by IS NULL AND NOT out_of_service THEN 'open'"
    " ELSE state END, " + _ISA_AGAIN.replace("state = 'acknowledged'", "false") + ""
    " WHERE state <> 'resolved' AND shelved_until IS NOT NULL",
    "out_of_service": "out_of_service = true, isa_state = 'out_of_service' WHERE state <> 'resolved'",
    "in_service": "out_of_service = false, "
    + _ISA_AGAIN.replace("WHEN out_of_service THEN 'out_of_service' ", "")
    + " WHERE state <> 'resolved' AND out_of_service",
}

ACTION_SQL = {  # complete statements, built once from the constants above
    action: "UPDATE alerts SET updated_at = %(ts)s, " + change + " AND alert_id = %(id)s"
    for action, change in _ACTION_SQL.items()
}
LIST_ALERTS = (
    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE state = ANY(%s) AND (%s::text IS NULL OR twin_id = %s)"
    " AND (%s::text[] IS NULL OR isa_state = ANY(%s::text[])) ORDER BY opened_at DESC LIMIT %s"
)


def _alert_params(a: Alert) -> dict[str, Any]:
    d = msgspec.structs.asdict(a)
    d["evidence"] = Jsonb(a.evidence)
    d["actor"] = (
        a.acked_by if a.event == "acknowledged" else a.resolved_by if a.event == "resolved" else a.evidence.get("actor")
    )
    return d


class AlertStore:
    """A reconnecting writer (one per sink partition) and reader (the CLI)."""

    def __init__(self, conninfo: str, *, max_attempts: int | None = None) -> None:
        self._db = Session(conninfo, max_attempts=max_attempts)

    def _tx(self, fn: Callable[[psycopg.Connection], Any], what: str) -> Any:
        return self._db.transaction(fn, what)

    # ------------------------------------------------------------------ writes
    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Upsert alert versions and record them in the history (idempotent)."""
        if not alerts:
            return
        params = [_alert_params(a) for a in alerts]

        def run(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany(UPSERT_ALERT, params)
                cur.executemany(INSERT_EVENT, params)

        self._tx(run, f"writing {len(alerts)} alert versions")

    def write_model_outputs(self, records: Sequence[AnomalyScore | FailurePrediction | ForecastPoint]) -> None:
        """Upsert anomaly scores, forecasts and failure predictions (idempotent)."""
        scores = [
            (
                r.twin_id,
                r.ts,
                r.score,
                r.threshold,
                r.is_anomaly,
                Jsonb(r.contributions),
                r.model,
                r.kind,
                r.health,
                Jsonb(r.drivers) if r.drivers else None,
                Jsonb(r.sensor_faults) if r.sensor_faults else None,
            )
            for r in records
            if isinstance(r, AnomalyScore)
        ]
        forecasts = [
            (r.twin_id, r.sensor, r.ts, r.target_ts, r.predicted, r.lower, r.upper, r.limit, r.breach_at)
            for r in records
            if isinstance(r, ForecastPoint)
        ]
        failures = [
            (r.twin_id, r.ts, r.rul_s, r.failure_probability, r.uncertainty, r.horizon_s)
            for r in records
            if isinstance(r, FailurePrediction)
        ]

        def run(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                for sql, rows in (
                    (UPSERT_SCORE, scores),
                    (UPSERT_FORECAST, forecasts),
                    (UPSERT_FAILURE, failures),
                ):
                    if rows:
                        cur.executemany(sql, rows)

        if scores or forecasts or failures:
            self._tx(run, f"writing {len(records)} model outputs")

    # ------------------------------------------------------------------ CLI
    def list_alerts(
        self,
        *,
        states: Sequence[str],
        twin_id: str | None = None,
        limit: int = 50,
        isa_states: Sequence[str] | None = None,
    ) -> list[dict]:
        """Latest alerts, newest first, in the given states (and ISA-18.2 states, when given)."""

        def run(conn: psycopg.Connection) -> list[dict]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(LIST_ALERTS, (list(states), twin_id, twin_id, isa_states, isa_states, limit))
                return cur.fetchall()

        return self._tx(run, "listing alerts")

    def get_alert(self, alert_id: str) -> dict | None:
        def run(conn: psycopg.Connection) -> dict | None:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SELECT * FROM alerts WHERE alert_id = %s", (alert_id,))
                return cur.fetchone()

        return self._tx(run, f"reading alert {alert_id}")

    def record_action(
        self,
        alert_id: str,
        action: str,
        by: str,
        ts: datetime,
        *,
        until: datetime | None = None,
        note: str = "",
    ) -> bool:
        """Apply an action to the row at once (the flow confirms it with a new version)."""
        params: dict[str, Any] = {"id": alert_id, "by": by, "ts": ts, "until": until, "note": note}
        sql = ACTION_SQL[action]

        def run(conn: psycopg.Connection) -> bool:
            return conn.execute(sql, params).rowcount > 0

        return self._tx(run, f"{action} of alert {alert_id}")

    def close(self) -> None:
        self._db.close()
