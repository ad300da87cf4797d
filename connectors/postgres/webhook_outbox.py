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
    " http_status, last_error"
)
LIST = f"""
SELECT {COLUMNS} FROM webhook_outbox
WHERE state = ANY(%(states)s) AND (%(alert)s::text IS NULL OR alert_id = %(alert)s)
  AND (%(twin)s::text IS NULL OR twin_id = %(twin)s)
ORDER BY created_at DESC, alert_id, version DESC
LIMIT %(limit)s
"""
COUNTS = "SELECT state, count(*) AS n FROM webhook_outbox GROUP BY state"
# Failed versions queued again (a fixed URL, a receiver back from a 410): tried at once, a new retention.
REDELIVER = """
UPDATE webhook_outbox SET state = 'pending', attempts = 0, created_at = now(), next_attempt_at = now(),
    settled_at = NULL
WHERE state = 'failed' AND alert_id = %(alert)s AND (%(version)s::integer IS NULL OR version = %(version)s)
RETURNING alert_id, version
"""
REDELIVER_ALL = """
UPDATE webhook_outbox SET state = 'pending', attempts = 0, created_at = now(), next_attempt_at = now(),
    settled_at = NULL
WHERE state = 'failed'
RETURNING alert_id, version
"""


def enqueue_params(alert_id: str, version: int, twin_id: str, body: bytes) -> dict[str, Any]:
    """The parameters of :data:`ENQUEUE` for one alert version (``body``: its JSON)."""
    return {"alert_id": alert_id, "version": version, "twin_id": twin_id, "body": body.decode()}


class OutboxStore:
    """The outbox for ``twinflow alerts deliveries | redeliver`` (a reconnecting session)."""

    def __init__(self, conninfo: str, *, max_attempts: int | None = 3) -> None:
        from connectors.postgres.session import Session

        self._db = Session(conninfo, max_attempts=max_attempts, name=type(self).__name__)

    def deliveries(
        self, states: list[str], *, alert: str | None = None, twin: str | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The newest ``limit`` rows in ``states`` (of one alert or twin), and the count per state."""
        from psycopg.rows import dict_row

        params = {"states": states, "alert": alert, "twin": twin, "limit": limit}

        def run(conn: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(LIST, params).fetchall()
                counts = {r["state"]: r["n"] for r in cur.execute(COUNTS).fetchall()}
            return rows, counts

        return self._db.transaction(run, "reading the webhook outbox")

    def redeliver(self, alert: str | None, version: int | None = None) -> list[tuple[str, int]]:
        """Queue failed versions again (of ``alert``, or all with None); the ``(alert_id, version)`` queued."""
        if alert is None:
            return self._db.transaction(lambda c: c.execute(REDELIVER_ALL).fetchall(), "queueing failed deliveries")
        params = {"alert": alert, "version": version}
        return self._db.transaction(lambda c: c.execute(REDELIVER, params).fetchall(), f"queueing {alert} again")

    def close(self) -> None:
        self._db.close()
