-- predicted_failures_24h: twins whose latest prediction (made in the last 6 hours) says they
-- fail within the next 24 hours, soonest first.
-- Parameters: %(twins)s text[] or NULL; %(min_probability)s double (e.g. 0.5; failing within
-- 24 h by RUL counts regardless of the probability).
SELECT twin_id, ts AS predicted_at,
       ts + rul_s * INTERVAL '1 second' AS predicted_failure_at,
       rul_s / 3600.0 AS rul_hours,
       failure_probability, uncertainty
FROM (
    SELECT DISTINCT ON (twin_id) *
    FROM failure_predictions
    WHERE twinflow_model_source(model) = 'twinflow'
      AND ts > now() - INTERVAL '6 hours'
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    ORDER BY twin_id, ts DESC
) latest
WHERE ts + rul_s * INTERVAL '1 second' <= now() + INTERVAL '24 hours'
   OR failure_probability >= %(min_probability)s
ORDER BY predicted_failure_at, twin_id;
