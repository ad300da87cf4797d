-- alert_mtta_mttr: alerts opened in a time range per kind and severity with mean time to
-- acknowledge (MTTA) and mean time to resolve (MTTR), in minutes, plus the share that
-- resolved by itself (condition cleared, resolved_by = 'auto') and escalations.
-- Parameters: %(since)s, %(until)s timestamptz; %(twins)s text[] or NULL.
SELECT kind, severity,
       count(*) AS alerts,
       count(acked_at) AS acknowledged,
       count(resolved_at) AS resolved,
       round((avg(extract(epoch FROM acked_at - opened_at)) / 60)::numeric, 2) AS mtta_minutes,
       round((avg(extract(epoch FROM resolved_at - opened_at)) / 60)::numeric, 2) AS mttr_minutes,
       round(avg((resolved_by = 'auto')::int)::numeric, 4) AS auto_resolved_share,
       count(*) FILTER (WHERE escalation_level > 0) AS escalated
FROM alerts
WHERE opened_at >= %(since)s AND opened_at < %(until)s
  AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
GROUP BY ROLLUP (kind, severity)
ORDER BY kind NULLS LAST, array_position(ARRAY['critical','major','minor'], severity) NULLS LAST;
