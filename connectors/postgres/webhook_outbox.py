"""The webhook outbox in PostgreSQL (``webhook_outbox``, migration 0135): queued alert versions
and their delivery, for the alerts flow (:class:`~connectors.postgres.alert_sinks.AlertSink`
queues, :mod:`connectors.webhook.delivery` delivers) and ``twinflow alerts deliveries | redeliver``.

* **Queued with the alert**: :data:`ENQUEUE` runs in the transaction that writes the version to
  ``alerts``; ``ON CONFLICT DO NOTHING`` on ``(alert_id, version)``, so a replay (recovery, a
  retried transaction) never queues a version again, delivered or not.
* **In order per alert**: :data:`CLAIM` takes a due version only when no earlier version of its
  alert is pending, and locks it (``FOR UPDATE SKIP LOCKED``) for the transaction that POSTs it
  and records the answer: several threads and processes deliver at once, never the same row, and
  a process killed mid-delivery leaves its rows pending (its connection's locks go with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

NO_OUTBOX = (
    "alerts.webhook_url is set but the database has no webhook_outbox table (migration 0135): run"
    " `twinflow db migrate`"
)
ENQUEUE = """
INSERT INTO webhook_outbox (alert_id, version, twin_id, body)
VALUES (%(alert_id)s, %(version)s, %(twin_id)s, %(body)s)
ON CONFLICT (alert_id, version) DO NOTHING
"""
CLAIM = """
SELECT o.alert_id, o.version, o.body, o.attempts, o.created_at < now() - make_interval(secs => %(retention_s)s),
       extract(epoch FROM now() - o.created_at)::float8
FROM webhook_outbox o
WHERE o.state = 'pending' AND o.next_attempt_at <= now()
  AND NOT EXISTS (SELECT 1 FROM webhook_outbox p
                  WHERE p.alert_id = o.alert_id AND p.state = 'pending' AND p.version < o.version)
ORDER BY o.next_attempt_at
LIMIT 1
FOR UPDATE OF o SKIP LOCKED
"""
DELIVERED = """
UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, last_attempt_at = now(),
    settled_at = now(), http_status = %(status)s, last_error = NULL
WHERE alert_id = %(alert_id)s AND version = %(version)s
"""
FAILED = """
UPDATE webhook_outbox SET state = 'failed', attempts = attempts + 1, last_attempt_at = now(),
    settled_at = now(), http_status = %(status)s, last_error = %(error)s
WHERE alert_id = %(alert_id)s AND version = %(version)s
"""
RETRY = """
UPDATE webhook_outbox SET attempts = attempts + 1, last_attempt_at = now(), http_status = %(status)s,
    last_error = %(error)s, next_attempt_at = now() + make_interval(secs => %(delay_s)s)
WHERE alert_id = %(alert_id)s AND version = %(version)s
"""
# A pending version queued longer ago than the retention fails; settled rows go a retention later.
EXPIRE = """
UPDATE webhook_outbox SET state = 'failed', settled_at = now(),
    last_error = format('expired: not delivered within alerts.webhook_retention_s (%%s s); last error: %%s',
                        %(retention_s)s, coalesce(last_error, 'none (never attempted)'))
WHERE state = 'pending' AND created_at < now() - make_interval(secs => %(retention_s)s)
"""
PURGE = """
DELETE FROM webhook_outbox WHERE state <> 'pending' AND settled_at < now() - make_interval(secs => %(retention_s)s)
"""
COLUMNS = (
    "alert_id, version, twin_id, state, attempts, created_at, next_attempt_at, last_attempt_at, settled_at,"
    " http_status, last_error, redelivered_by, redelivered_at"
)
DELIVERY_STATES = ("pending", "delivered", "failed")
_SELECTED = """
FROM webhook_outbox
WHERE state = ANY(%(states)s) AND (%(alert)s::text IS NULL OR alert_id = %(alert)s)
  AND (%(twin)s::text IS NULL OR twin_id = %(twin)s)
"""
# Newest first; alert_id and version last: a stable order for paging.
LIST = f"SELECT {COLUMNS}{_SELECTED}ORDER BY created_at DESC, alert_id, version DESC LIMIT %(limit)s OFFSET %(offset)s"
COUNT = f"SELECT count(*) AS n{_SELECTED}"
COUNTS = "SELECT state, count(*) AS n FROM webhook_outbox GROUP BY state"
# Failed versions queued again (a fixed URL, a receiver back from a 410): tried at once, a new retention;
# who asked is kept on the row.
_AGAIN = """
UPDATE webhook_outbox SET state = 'pending', attempts = 0, created_at = now(), next_attempt_at = now(),
    settled_at = NULL, redelivered_by = %(by)s, redelivered_at = now()
WHERE state = 'failed'"""
REDELIVER = _AGAIN + """ AND alert_id = %(alert)s AND (%(version)s::integer IS NULL OR version = %(version)s)
RETURNING alert_id, version
"""
REDELIVER_ALL = _AGAIN + "\nRETURNING alert_id, version\n"


@dataclass(frozen=True)
class DeliveryQuery:
    """Which outbox rows a list shows (``twinflow alerts deliveries``, ``GET /api/v1/alerts/deliveries``):
    states, optionally one alert or twin, one page of ``limit`` from ``offset``, newest first."""

    states: Sequence[str] = DELIVERY_STATES
    alert: str | None = None
    twin: str | None = None
    limit: int = 50
    offset: int = 0

    def params(self) -> dict[str, Any]:
        return {**asdict(self), "states": list(self.states)}


@dataclass(frozen=True)
class Deliveries:
    """A page of outbox rows, how many the query selects in all, and the count per state in the outbox."""

    rows: list[dict[str, Any]]
    total: int
    counts: dict[str, int]


def enqueue_params(alert_id: str, version: int, twin_id: str, body: bytes) -> dict[str, Any]:
    """The parameters of :data:`ENQUEUE` for one alert version (``body``: its JSON)."""
    return {"alert_id": alert_id, "version": version, "twin_id": twin_id, "body": body.decode()}


class OutboxStore:
    """The outbox for ``twinflow alerts deliveries | redeliver`` (a reconnecting session)."""

    def __init__(self, conninfo: str, *, max_attempts: int | None = 3) -> None:
        from connectors.postgres.session import Session

        self._db = Session(conninfo, max_attempts=max_attempts, name=type(self).__name__)

    def deliveries(self, query: DeliveryQuery) -> Deliveries:
        """The page of rows ``query`` selects, their number, and the count per state."""
        from psycopg.rows import dict_row

        params = query.params()

        def run(conn: Any) -> Deliveries:
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(LIST, params).fetchall()
                total = cur.execute(COUNT, params).fetchone()["n"]
                counts = {r["state"]: r["n"] for r in cur.execute(COUNTS).fetchall()}
            return Deliveries(rows, total, counts)

        return self._db.transaction(run, "reading the webhook outbox")

    def redeliver(self, alert: str | None, version: int | None = None, *, by: str) -> list[tuple[str, int]]:
        """Queue failed versions again (of ``alert``, or all with None) as asked by ``by``; the
        ``(alert_id, version)`` queued."""
        sql, what = (REDELIVER_ALL, "queueing failed deliveries") if alert is None else (REDELIVER, f"queueing {alert}")
        params = {"alert": alert, "version": version, "by": by}
        return self._db.transaction(lambda c: c.execute(sql, params).fetchall(), what)

    def close(self) -> None:
        self._db.close()
