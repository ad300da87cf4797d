"""The alerts flow's PostgreSQL sinks: alert versions and model outputs, idempotently.

:class:`~connectors.postgres.sink.PostgresSink` subclasses (batching, connection, retries);
each batch is one transaction:

* ``alerts``: one row per alert, upserted by (alert_id, opened_at); a newer ``version`` wins,
  the state only moves forward (open → acknowledged → resolved) and ack/resolve facts once
  set are kept, so replays and out-of-order writes (flow vs. CLI) never roll an alert back.
* ``alert_events``: every version, ``ON CONFLICT DO NOTHING``.
* ``webhook_outbox`` (with a webhook): every version, queued for delivery in the same transaction,
  ``ON CONFLICT DO NOTHING`` (:mod:`connectors.postgres.webhook_outbox`); the sink's writers share
  the process's delivery threads (:mod:`connectors.webhook.delivery`) and wake them after each commit.
* ``anomaly_scores``, ``forecasts``, ``failure_predictions``: upsert on their identity (which ends
  with the record's ``model``: two models' outputs for the same instant are two rows), by binary
  COPY (:mod:`connectors.postgres.copy_insert`: straight into the table; through a staging table
  and ``INSERT … ON CONFLICT DO UPDATE`` only when a batch holds stored rows, e.g. a replay).

Alert versions are parameterised statements (``executemany``): a few rows per alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from connectors.postgres.copy_insert import CopyInsert, CopyTable
from connectors.postgres.session import Session
from connectors.postgres.sink import PostgresSink
from connectors.postgres.webhook_outbox import ENQUEUE, NO_OUTBOX, enqueue_params
from operators.records.alerts import Alert, AnomalyScore, FailurePrediction, ForecastPoint, encode

if TYPE_CHECKING:
    from connectors.webhook.delivery import OutboxDelivery

ModelOutput = AnomalyScore | FailurePrediction | ForecastPoint

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
SCORES = CopyTable(
    "anomaly_scores",
    ("twin_id", "ts", "score", "threshold", "is_anomaly", "contributions", "model", "kind", "health", "drivers",
     "sensor_faults"),
    ("text", "timestamptz", "float8", "float8", "bool", "jsonb", "text", "text", "float8", "jsonb", "jsonb"),
    ("twin_id", "ts", "model"),
    "DO UPDATE SET score = EXCLUDED.score, threshold = EXCLUDED.threshold, is_anomaly = EXCLUDED.is_anomaly,"
    " contributions = EXCLUDED.contributions, kind = EXCLUDED.kind, health = EXCLUDED.health,"
    " drivers = EXCLUDED.drivers, sensor_faults = EXCLUDED.sensor_faults",
)  # fmt: skip
FORECASTS = CopyTable(
    "forecasts",
    ("twin_id", "sensor", "ts", "target_ts", "predicted", "lower", "upper", "limit_value", "breach_at", "model"),
    ("text", "text", "timestamptz", "timestamptz", "float8", "float8", "float8", "float8", "timestamptz", "text"),
    ("twin_id", "sensor", "ts", "target_ts", "model"),
    "DO UPDATE SET predicted = EXCLUDED.predicted, lower = EXCLUDED.lower, upper = EXCLUDED.upper,"
    " limit_value = EXCLUDED.limit_value, breach_at = EXCLUDED.breach_at",
)
FAILURES = CopyTable(
    "failure_predictions",
    ("twin_id", "ts", "rul_s", "failure_probability", "uncertainty", "horizon_s", "model"),
    ("text", "timestamptz", "float8", "float8", "float8", "float8", "text"),
    ("twin_id", "ts", "model"),
    "DO UPDATE SET rul_s = EXCLUDED.rul_s, failure_probability = EXCLUDED.failure_probability,"
    " uncertainty = EXCLUDED.uncertainty, horizon_s = EXCLUDED.horizon_s",
)


def _alert_params(a: Alert) -> dict[str, Any]:
    d = msgspec.structs.asdict(a)
    d["evidence"] = Jsonb(a.evidence)
    d["actor"] = (
        a.acked_by if a.event == "acknowledged" else a.resolved_by if a.event == "resolved" else a.evidence.get("actor")
    )
    return d


class AlertSink(PostgresSink[Alert]):
    """Upserts alert versions into ``alerts`` and records each in ``alert_events``; with ``webhook``
    also queues each in ``webhook_outbox`` and runs its delivery while a writer is open."""

    what = "alert versions"

    def __init__(self, conninfo: str, *, webhook: OutboxDelivery | None = None, **options: Any) -> None:
        super().__init__(conninfo, **options)
        self.webhook = webhook

    def connect(self) -> Session:
        if self.webhook is not None:
            self.webhook.acquire()
        return super().connect()

    def write_to(self, session: Session, batch: Sequence[Alert]) -> int:
        written = super().write_to(session, batch)
        if self.webhook is not None:
            self.webhook.wake()
        return written

    def disconnect(self, session: Session) -> None:
        super().disconnect(session)
        if self.webhook is not None:
            self.webhook.release()

    def write(self, conn: psycopg.Connection, alerts: Sequence[Alert]) -> int:
        rows = [_alert_params(a) for a in alerts]
        with conn.cursor() as cur:
            cur.executemany(UPSERT_ALERT, rows)
            changed = cur.rowcount
            cur.executemany(INSERT_EVENT, rows)
            if self.webhook is not None:
                queued = [enqueue_params(a.alert_id, a.version, a.twin_id, encode(a)) for a in alerts]
                try:
                    cur.executemany(ENQUEUE, queued)
                except psycopg.errors.UndefinedTable:
                    raise RuntimeError(NO_OUTBOX) from None
        return changed


class ModelOutputSink(PostgresSink[ModelOutput]):
    """Upserts anomaly scores, forecasts and failure predictions."""

    what = "model outputs"
    setup = (SCORES.setup, FORECASTS.setup, FAILURES.setup)

    def __init__(self, conninfo: str, **options: Any) -> None:
        super().__init__(conninfo, **options)
        self._insert = CopyInsert()

    def write(self, conn: psycopg.Connection, records: Sequence[ModelOutput]) -> int:
        written = 0
        with conn.cursor() as cur:
            for table, rows in (
                (SCORES, [_score_row(r) for r in records if isinstance(r, AnomalyScore)]),
                (FORECASTS, [_forecast_row(r) for r in records if isinstance(r, ForecastPoint)]),
                (FAILURES, [_failure_row(r) for r in records if isinstance(r, FailurePrediction)]),
            ):
                if rows:
                    written += self._insert.write(cur, table, rows)
        return written


_json = msgspec.json.encode  # the same JSON as json.dumps (the database stores jsonb) at a fraction of its CPU


def _score_row(r: AnomalyScore) -> tuple[Any, ...]:
    return (
        r.twin_id,
        r.ts,
        r.score,
        r.threshold,
        r.is_anomaly,
        Jsonb(r.contributions, _json),
        r.model,
        r.kind,
        r.health,
        Jsonb(r.drivers, _json) if r.drivers else None,
        Jsonb(r.sensor_faults, _json) if r.sensor_faults else None,
    )


def _forecast_row(r: ForecastPoint) -> tuple[Any, ...]:
    return (r.twin_id, r.sensor, r.ts, r.target_ts, r.predicted, r.lower, r.upper, r.limit, r.breach_at, r.model)


def _failure_row(r: FailurePrediction) -> tuple[Any, ...]:
    return (r.twin_id, r.ts, r.rul_s, r.failure_probability, r.uncertainty, r.horizon_s, r.model)
