-- fleet_health: one row per twin, now: last reading, latest anomaly score and health index (with the
-- sensors that lower it and faulty sensors), failure prediction, open alerts and an overall status
-- (critical | warning | stale | ok).
-- Parameters: %(twins)s text[] or NULL (all twins); %(stale_after)s interval (e.g. '5 minutes').
WITH seen AS (
    SELECT twin_id, max(ts) AS last_seen,
           count(*) FILTER (WHERE ts > now() - %(stale_after)s::interval) AS recent_readings
    FROM telemetry
    WHERE ts > now() - INTERVAL '1 day'
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    GROUP BY twin_id
), score AS (
    SELECT DISTINCT ON (twin_id) twin_id, score, threshold, is_anomaly, health, drivers, sensor_faults
    FROM anomaly_scores
    WHERE twinflow_model_source(model) = 'twinflow'
      AND ts > now() - INTERVAL '1 day'
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    ORDER BY twin_id, ts DESC
), failure AS (
    SELECT DISTINCT ON (twin_id) twin_id, rul_s, failure_probability
    FROM failure_predictions
    WHERE twinflow_model_source(model) = 'twinflow'
      AND ts > now() - INTERVAL '1 day'
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    ORDER BY twin_id, ts DESC
), open_alerts AS (
    SELECT twin_id, count(*) AS open_alerts,
           max(array_position(ARRAY['minor','major','critical'], severity)) AS worst
    FROM alerts
    WHERE state <> 'resolved'
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    GROUP BY twin_id
), twins AS (
    SELECT twin_id FROM seen UNION SELECT twin_id FROM score
    UNION SELECT twin_id FROM failure UNION SELECT twin_id FROM open_alerts
)
SELECT * FROM (
    SELECT t.twin_id,
           s.last_seen,
           extract(epoch FROM now() - s.last_seen) AS seconds_since_seen,
           coalesce(s.recent_readings, 0) AS recent_readings,
           sc.score AS anomaly_score,
           sc.threshold AS anomaly_threshold,
           sc.health,
           sc.drivers AS health_drivers,
           sc.sensor_faults,
           f.rul_s / 3600.0 AS rul_hours,
           f.failure_probability,
           coalesce(o.open_alerts, 0) AS open_alerts,
           (ARRAY['minor','major','critical'])[o.worst] AS worst_open_severity,
           CASE
               WHEN o.worst = 3 THEN 'critical'
               WHEN o.worst IS NOT NULL OR sc.is_anomaly OR sc.health < 0.5 OR sc.sensor_faults IS NOT NULL
                    OR f.failure_probability >= 0.5 THEN 'warning'
               WHEN s.last_seen IS NULL OR s.last_seen < now() - %(stale_after)s::interval THEN 'stale'
               ELSE 'ok'
           END AS status
    FROM twins t
    LEFT JOIN seen s USING (twin_id)
    LEFT JOIN score sc USING (twin_id)
    LEFT JOIN failure f USING (twin_id)
    LEFT JOIN open_alerts o USING (twin_id)
) health
ORDER BY array_position(ARRAY['critical', 'warning', 'stale', 'ok'], status), twin_id;
