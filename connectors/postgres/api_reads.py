"""The HTTP API's reads from PostgreSQL/TimescaleDB (async, pooled): twins, history, telemetry,
model outputs, alerts.

Latest states come from ``twin_state_history`` by primary key (newest version of a twin); the fleet
list walks twin ids with a skip scan on that key (one index probe per twin), so it costs the same
with 10 or 10,000 versions per twin. Telemetry is bucketed with ``time_bucket`` on TimescaleDB and
``date_bin`` on plain PostgreSQL (≥ 14).

Model outputs are one source's rows (``%(source)s``: ``twinflow``, the built-in models, unless a
caller asks for a model of its own): ``twinflow_model_source(model)`` (migration 0140) is the alerts
flow's :func:`~operators.records.alerts.source_of` in SQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from connectors.postgres import webhook_outbox as outbox
from connectors.postgres.alerts_store import ALERT_COLUMNS, AlertQuery
from connectors.postgres.webhook_outbox import Deliveries, DeliveryQuery
from operators.records.alerts import BUILTIN_SOURCE

STATE_COLUMNS = (
    "twin_id, version, event_time, status, mode, learn, reported, desired, delta, conflicts, commands,"
    " consistency_score, sync_latency_ms, last_sync_time, desync_since, simulated, change, desired_version,"
    " connectivity"
)
STATE_KEYS = tuple(c.strip() for c in STATE_COLUMNS.split(","))
LATEST = f"SELECT {STATE_COLUMNS} FROM twin_state_history WHERE twin_id = %s ORDER BY version DESC LIMIT 1"
# Skip scan over twin ids after a cursor, newest state of each, with open alerts and the latest score
# of the source (and health index, where the schema has it: issue 12's anomaly_scores.health).
_FLEET = f"""
WITH RECURSIVE ids AS (
    (SELECT twin_id FROM twin_state_history WHERE twin_id > %(after)s ORDER BY twin_id LIMIT 1)
    UNION ALL
    SELECT (SELECT h.twin_id FROM twin_state_history h WHERE h.twin_id > ids.twin_id ORDER BY h.twin_id LIMIT 1)
    FROM ids WHERE ids.twin_id IS NOT NULL
)
SELECT s.*, coalesce(a.open_alerts, 0) AS open_alerts, a.worst_severity, sc.score, sc.threshold, sc.score_ts,
       sc.health
FROM ids
CROSS JOIN LATERAL (
    SELECT {STATE_COLUMNS} FROM twin_state_history h WHERE h.twin_id = ids.twin_id ORDER BY version DESC LIMIT 1
) s
LEFT JOIN LATERAL (
    SELECT count(*) AS open_alerts,
           (array_agg(severity ORDER BY array_position(ARRAY['minor','major','critical'], severity) DESC))[1]
               AS worst_severity
    FROM alerts WHERE alerts.twin_id = ids.twin_id AND state <> 'resolved'
) a ON true
LEFT JOIN LATERAL (
    SELECT score, threshold, ts AS score_ts, {{health}} AS health FROM anomaly_scores
    WHERE anomaly_scores.twin_id = ids.twin_id AND twinflow_model_source(model) = %(source)s
    ORDER BY ts DESC LIMIT 1
) sc ON true
WHERE ids.twin_id IS NOT NULL AND (%(status)s::text IS NULL OR s.status = %(status)s)
LIMIT %(limit)s
"""


FLEET = {True: _FLEET.replace("{health}", "health"), False: _FLEET.replace("{health}", "NULL::float8")}
_SCORES = (
    "SELECT ts, score, threshold, is_anomaly, contributions, {health} AS health, model FROM ("
    " SELECT * FROM anomaly_scores WHERE twin_id = %s AND twinflow_model_source(model) = %s"
    " AND ts >= %s AND ts < %s ORDER BY ts DESC LIMIT %s"
    ") s ORDER BY ts"
)
SCORES = {True: _SCORES.replace("{health}", "health"), False: _SCORES.replace("{health}", "NULL::float8")}
HAS_HEALTH = (
    "SELECT 1 AS ok FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND table_name = 'anomaly_scores' AND column_name = 'health'"
)
STATE_AT = (
    f"SELECT {STATE_COLUMNS} FROM twin_state_history WHERE twin_id = %s AND event_time <= %s"
    " ORDER BY event_time DESC, version DESC LIMIT 1"
)
HISTORY = (
    f"SELECT {STATE_COLUMNS} FROM twin_state_history WHERE twin_id = %s"
    " AND (%s::timestamptz IS NULL OR event_time >= %s) AND (%s::timestamptz IS NULL OR event_time < %s)"
    " ORDER BY version DESC LIMIT %s"
)
TELEMETRY_RAW = (
    "SELECT sensor, ts, value, quality FROM telemetry WHERE twin_id = %s"
    " AND (%s::text[] IS NULL OR sensor = ANY(%s::text[])) AND ts >= %s AND ts < %s ORDER BY sensor, ts LIMIT %s"
)
_BUCKETED = (
    "SELECT sensor, {fn} AS ts, avg(value) AS mean, min(value) AS min, max(value) AS max, count(*) AS n"
    " FROM telemetry WHERE twin_id = %s AND (%s::text[] IS NULL OR sensor = ANY(%s::text[]))"
    " AND ts >= %s AND ts < %s GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %s"
)
TELEMETRY_BUCKETS = {  # TimescaleDB, plain PostgreSQL ≥ 14
    True: _BUCKETED.format(fn="time_bucket(%s, ts)"),
    False: _BUCKETED.format(fn="date_bin(%s, ts, TIMESTAMPTZ '2000-01-01')"),
}
FORECASTS = (
    "SELECT f.sensor, f.ts, f.target_ts, f.predicted, f.lower, f.upper, f.limit_value, f.breach_at, f.model"
    " FROM (SELECT sensor, max(ts) AS ts FROM forecasts WHERE twin_id = %(twin)s"
    "       AND twinflow_model_source(model) = %(source)s AND ts > now() - interval '1 day' GROUP BY sensor) latest"
    " JOIN forecasts f ON f.twin_id = %(twin)s AND f.sensor = latest.sensor AND f.ts = latest.ts"
    "  AND twinflow_model_source(f.model) = %(source)s"
    " ORDER BY f.sensor, f.target_ts"
)
FAILURES = (
    "SELECT ts, rul_s, failure_probability, uncertainty, horizon_s, model FROM ("
    " SELECT * FROM failure_predictions WHERE twin_id = %s AND twinflow_model_source(model) = %s"
    " AND ts >= %s AND ts < %s ORDER BY ts DESC LIMIT %s"
    ") f ORDER BY ts"
)
# The models with outputs for a twin since a time: each model name's newest row per kind. Each part is a
# range scan of one twin's rows on the key's prefix (twin_id, ts …; forecasts: twin_id, then ts per sensor)
MODELS = (
    "SELECT 'scores' AS kind, model, max(ts) AS last FROM anomaly_scores"
    " WHERE twin_id = %(twin)s AND ts >= %(since)s GROUP BY model"
    " UNION ALL SELECT 'forecasts', model, max(ts) FROM forecasts"
    " WHERE twin_id = %(twin)s AND ts >= %(since)s GROUP BY model"
    " UNION ALL SELECT 'failures', model, max(ts) FROM failure_predictions"
    " WHERE twin_id = %(twin)s AND ts >= %(since)s GROUP BY model"
)
ALERT = f"SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = %s"


class ApiReads:
    """One pool for the server's lifetime; ``open()`` at start-up, ``close()`` at shutdown."""

    def __init__(self, conninfo: str, size: int = 8) -> None:
        self.pool = AsyncConnectionPool(
            conninfo, min_size=min(2, size), max_size=size, open=False, kwargs={"row_factory": dict_row}
        )
        self.timescale = False
        self.health = False  # the schema has anomaly_scores.health (issue 12)

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)
        self.timescale = bool(await self._one("SELECT 1 AS ok FROM pg_extension WHERE extname = 'timescaledb'", ()))
        self.health = bool(await self._one(HAS_HEALTH, ()))

    async def close(self) -> None:
        await self.pool.close()

    async def _all(self, sql: str, params: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _one(self, sql: str, params: Any) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def ping(self) -> bool:
        return bool(await self._one("SELECT 1 AS ok", ()))

    # ------------------------------------------------------------------ twins
    async def twin(self, twin_id: str) -> dict[str, Any] | None:
        return await self._one(LATEST, (twin_id,))

    async def warm(self, cache: Any, page: int = 1000) -> int:
        """Load the newest state of up to ``cache.max_entries`` twins into ``cache`` (start-up)."""
        after, n = "", 0
        while n < cache.max_entries:
            params = {"after": after, "limit": page, "status": None, "source": BUILTIN_SOURCE}
            rows = await self._all(FLEET[self.health], params)
            for row in rows:
                state = {k: row[k] for k in STATE_KEYS}
                cache.put_row(state)
            n += len(rows)
            if len(rows) < page:
                break
            after = rows[-1]["twin_id"]
        return n

    async def fleet(
        self, *, after: str, limit: int, status: str | None, source: str = BUILTIN_SOURCE
    ) -> list[dict[str, Any]]:
        params = {"after": after, "limit": limit, "status": status, "source": source}
        return await self._all(FLEET[self.health], params)

    async def state_at(self, twin_id: str, at: datetime) -> dict[str, Any] | None:
        return await self._one(STATE_AT, (twin_id, at))

    async def history(
        self, twin_id: str, since: datetime | None, until: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        return await self._all(HISTORY, (twin_id, since, since, until, until, limit))

    # ------------------------------------------------------------------ telemetry and model outputs
    async def sensors(self, twin_id: str, since: datetime) -> list[str]:
        rows = await self._all(
            "SELECT DISTINCT sensor FROM telemetry WHERE twin_id = %s AND ts >= %s ORDER BY sensor", (twin_id, since)
        )
        return [r["sensor"] for r in rows]

    async def telemetry(
        self,
        twin_id: str,
        sensors: list[str] | None,
        since: datetime,
        until: datetime,
        bucket: timedelta | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Raw readings, or per bucket: mean, min, max and count."""
        if bucket is None:
            return await self._all(TELEMETRY_RAW, (twin_id, sensors, sensors, since, until, limit))
        sql = TELEMETRY_BUCKETS[self.timescale]
        return await self._all(sql, (bucket, twin_id, sensors, sensors, since, until, limit))

    async def scores(
        self, twin_id: str, since: datetime, until: datetime, limit: int, source: str = BUILTIN_SOURCE
    ) -> list[dict[str, Any]]:
        """The source's anomaly scores in [since, until), the newest ``limit`` of them, oldest first."""
        return await self._all(SCORES[self.health], (twin_id, source, since, until, limit))

    async def forecasts(self, twin_id: str, source: str = BUILTIN_SOURCE) -> list[dict[str, Any]]:
        """The source's latest forecast of each sensor: its points with their intervals and the limit."""
        return await self._all(FORECASTS, {"twin": twin_id, "source": source})

    async def failures(
        self, twin_id: str, since: datetime, until: datetime, limit: int, source: str = BUILTIN_SOURCE
    ) -> list[dict[str, Any]]:
        """The source's failure predictions in [since, until), the newest ``limit`` of them, oldest first."""
        return await self._all(FAILURES, (twin_id, source, since, until, limit))

    async def models(self, twin_id: str, since: datetime) -> list[dict[str, Any]]:
        """Each model name with outputs for the twin since ``since``: ``kind`` (scores, forecasts, failures),
        ``model`` (the rows' name, '' for none) and ``last`` (its newest output of that kind)."""
        return await self._all(MODELS, {"twin": twin_id, "since": since})

    async def named(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of a named query (``sql/queries``: :func:`twinflow.queries.load` gives its text)."""
        return await self._all(sql, params)

    # ------------------------------------------------------------------ alerts
    async def alerts(self, query: AlertQuery) -> list[dict[str, Any]]:
        return await self._all(query.sql(), query.params())

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        return await self._one(ALERT, (alert_id,))

    async def deliveries(self, query: DeliveryQuery) -> Deliveries:
        """The webhook outbox's rows ``query`` selects (``GET /alerts/deliveries``), as the CLI shows them."""
        params = query.params()
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(outbox.LIST, params)).fetchall()
            total = (await (await conn.execute(outbox.COUNT, params)).fetchone())["n"]
            counts = {r["state"]: r["n"] for r in await (await conn.execute(outbox.COUNTS)).fetchall()}
        return Deliveries(rows, total, counts)
