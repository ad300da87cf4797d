-- most_anomalous_twins: twins ranked by their anomaly in a time range, with the sensors that
-- contributed most (summed contribution shares over the anomalous samples).
-- Parameters: %(since)s, %(until)s timestamptz; %(twins)s text[] or NULL; %(limit)s int.
WITH s AS (
    SELECT twin_id, ts, score, threshold, is_anomaly, contributions
    FROM anomaly_scores
    WHERE twinflow_model_source(model) = 'twinflow'
      AND ts >= %(since)s AND ts < %(until)s
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
), ranked AS (
    SELECT twin_id,
           max(score / nullif(threshold, 0)) AS peak_ratio,
           avg(score / nullif(threshold, 0)) AS mean_ratio,
           count(*) FILTER (WHERE is_anomaly) AS anomalous_samples,
           count(*) AS samples,
           max(ts) FILTER (WHERE is_anomaly) AS last_anomaly_at
    FROM s GROUP BY twin_id
), sensors AS (
    SELECT twin_id, c.key AS sensor, sum(c.value::double precision) AS weight
    FROM s, jsonb_each_text(s.contributions) AS c
    WHERE s.is_anomaly
    GROUP BY twin_id, c.key
), top AS (
    SELECT twin_id, string_agg(sensor, ', ' ORDER BY weight DESC) AS top_sensors
    FROM (SELECT *, row_number() OVER (PARTITION BY twin_id ORDER BY weight DESC) AS rn FROM sensors) x
    WHERE rn <= 3
    GROUP BY twin_id
)
SELECT r.twin_id, r.peak_ratio, r.mean_ratio, r.anomalous_samples, r.samples,
       round((r.anomalous_samples::numeric / r.samples), 4) AS anomalous_share,
       r.last_anomaly_at, t.top_sensors
FROM ranked r LEFT JOIN top t USING (twin_id)
ORDER BY r.anomalous_samples DESC, r.peak_ratio DESC, r.twin_id
LIMIT %(limit)s;
