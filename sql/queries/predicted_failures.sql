-- predicted_failures: twins whose latest prediction (made in the last 6 hours) says they fail within
-- the next %(within_h)s hours, or whose failure probability is at least %(min_probability)s; soonest first.
-- Parameters: %(twins)s text[] or NULL; %(within_h)s double (hours, e.g. 24); %(min_probability)s double
-- or NULL (e.g. 0.5; failing within the horizon by RUL counts regardless of the probability);
-- %(source)s text (whose predictions: 'twinflow', the built-in models, or a model of your own's name);
-- %(limit)s integer or NULL (all).
SELECT twin_id, ts AS predicted_at,
       ts + rul_s * INTERVAL '1 second' AS predicted_failure_at,
       rul_s / 3600.0 AS rul_hours,
       failure_probability, uncertainty, model
FROM (
    SELECT DISTINCT ON (twin_id) *
    FROM failure_predictions
    WHERE twinflow_model_source(model) = %(source)s
      AND ts > now() - INTERVAL '6 hours'
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    ORDER BY twin_id, ts DESC
) latest
WHERE ts + rul_s * INTERVAL '1 second' <= now() + %(within_h)s * INTERVAL '1 hour'
   OR failure_probability >= %(min_probability)s
ORDER BY predicted_failure_at, twin_id
LIMIT %(limit)s;
