"""Alerts in PostgreSQL for the CLI and the HTTP API: list, read, and an operator's action
(ack, resolve, shelve, …) applied to the row at once. The alerts flow writes the rows
(:mod:`connectors.postgres.alert_sinks`).

Connection failures are retried with backoff and a new connection (connectors/retry.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.postgres.session import Session
from operators.records.alerts import MODEL_KINDS

log = logging.getLogger(__name__)

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
_WHERE = (
    " FROM alerts WHERE state = ANY(%(states)s) AND (%(twin)s::text IS NULL OR twin_id = %(twin)s)"
    " AND (%(isa)s::text[] IS NULL OR isa_state = ANY(%(isa)s::text[]))"
    " AND (%(severities)s::text[] IS NULL OR severity = ANY(%(severities)s::text[]))"
    " AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[]))"
    # a model's alerts (docs/alerts.md "A model of your own"): those naming it in evidence.sources; the built-in
    # models' (source twinflow): a model kind's alerts that name no sources (only they raised it) or name twinflow
    " AND (%(source)s::text IS NULL OR CASE WHEN %(source)s::text = 'twinflow'"
    " THEN kind = ANY(%(model_kinds)s::text[]) AND coalesce(evidence->'sources' ? 'twinflow', true)"
    " ELSE coalesce(evidence->'sources' ? %(source)s::text, false) END)"
)
ORDERS = {  # `alerts list --sort`, `GET /alerts?sort=`; alert_id last: a stable order for paging
    "time": "opened_at DESC, alert_id",
    "severity": "CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 ELSE 2 END, opened_at DESC, alert_id",
}
LIST_ALERTS = {
    sort: f"SELECT {ALERT_COLUMNS}{_WHERE} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s"
    for sort, order in ORDERS.items()
}
COUNT_ALERTS = f"SELECT count(*) AS n{_WHERE}"


@dataclass(frozen=True)
class AlertQuery:
    """Which alerts a list shows (shared by ``twinflow alerts list`` and ``GET /api/v1/alerts``): lifecycle
    states, and optionally a twin, ISA-18.2 states, severities, kinds and the source (model) that raised
    them (:func:`~operators.records.alerts.source_of`); sorted newest first or by severity (critical first,
    then newest), one page of ``limit`` from ``offset``."""

    states: Sequence[str]
    twin_id: str | None = None
    isa_states: Sequence[str] | None = None
    severities: Sequence[str] | None = None
    kinds: Sequence[str] | None = None
    sort: str = "time"
    limit: int = 50
    offset: int = 0
    source: str | None = None

    def params(self) -> dict[str, Any]:
        def listed(values: Sequence[str] | None) -> list[str] | None:
            return list(values) if values else None

        return {
            "states": list(self.states),
            "twin": self.twin_id,
            "isa": listed(self.isa_states),
            "severities": listed(self.severities),
            "kinds": listed(self.kinds),
            "limit": self.limit,
            "offset": self.offset,
            "source": self.source,
            "model_kinds": list(MODEL_KINDS),
        }

    def sql(self) -> str:
        return LIST_ALERTS[self.sort]


class AlertStore:
    """A reconnecting reader and action writer (the CLI, the HTTP API)."""

    def __init__(self, conninfo: str, *, max_attempts: int | None = None) -> None:
        self._db = Session(conninfo, max_attempts=max_attempts, name=type(self).__name__)

    def _tx(self, fn: Callable[[psycopg.Connection], Any], what: str) -> Any:
        return self._db.transaction(fn, what)

    def list_alerts(self, query: AlertQuery) -> tuple[list[dict], int]:
        """One page of the alerts ``query`` selects, and how many it selects in all."""

        def run(conn: psycopg.Connection) -> tuple[list[dict], int]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query.sql(), query.params())
                rows = cur.fetchall()
                cur.execute(COUNT_ALERTS, query.params())
                return rows, cur.fetchone()["n"]

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
