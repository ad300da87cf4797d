-- sync_quality: how well each twin's data keeps up with its machine in a time range:
-- readings and their quality, the gap between samples, ingest lag (device ts → database),
-- freshness, desync escalations from reconciliation (alerts of kind 'desync'), and the
-- reconciliation's own record (twin_sync_quality, one row per twin state version): consistency
-- score (latest, mean, min), share of versions 'synchronized', sync latency (mean, p95, max) and
-- the most parameters in conflict at once. Twins without reconciliation rows keep NULLs there.
-- Parameters: %(since)s, %(until)s timestamptz; %(twins)s text[] or NULL.
WITH env AS (  -- one row per envelope (twin, ts), not per sensor
    SELECT twin_id, ts, max(quality) AS quality, max(ingested_at) AS ingested_at
    FROM telemetry
    WHERE ts >= %(since)s AND ts < %(until)s
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    GROUP BY twin_id, ts
), gaps AS (
    SELECT twin_id, ts, quality, ingested_at,
           extract(epoch FROM ts - lag(ts) OVER (PARTITION BY twin_id ORDER BY ts)) AS gap_s
    FROM env
), per_twin AS (
    SELECT twin_id, count(*) AS samples,
           round(avg((quality = 0)::int)::numeric, 4) AS good_share,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap_s) AS median_gap_s,
           max(gap_s) AS max_gap_s,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts)) AS p95_lag_s,
           max(ts) AS last_seen
    FROM gaps GROUP BY twin_id
), desync AS (
    SELECT twin_id, count(*) AS desync_alerts,
           count(*) FILTER (WHERE state <> 'resolved') AS open_desync,
           sum(extract(epoch FROM coalesce(resolved_at, least(now(), %(until)s)) - greatest(opened_at, %(since)s)))
               AS desync_seconds
    FROM alerts
    WHERE kind = 'desync' AND opened_at < %(until)s AND coalesce(resolved_at, 'infinity') >= %(since)s
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    GROUP BY twin_id
), recon AS (
    SELECT twin_id, count(*) AS recon_versions,
           (array_agg(consistency_score ORDER BY ts DESC, version DESC))[1] AS consistency_score,
           round(avg(consistency_score)::numeric, 4) AS mean_consistency,
           min(consistency_score) AS min_consistency,
           round(avg((status = 'synchronized')::int)::numeric, 4) AS synchronized_share,
           avg(sync_latency_ms) AS mean_sync_latency_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY sync_latency_ms) AS p95_sync_latency_ms,
           max(sync_latency_ms) AS max_sync_latency_ms,
           max(conflicts) AS max_conflicts
    FROM twin_sync_quality
    WHERE ts >= %(since)s AND ts < %(until)s
      AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    GROUP BY twin_id
)
SELECT p.twin_id, p.samples, p.good_share, p.median_gap_s, p.max_gap_s, p.p95_lag_s, p.last_seen,
       coalesce(d.desync_alerts, 0) AS desync_alerts,
       coalesce(d.open_desync, 0) AS open_desync,
       round((1 - coalesce(d.desync_seconds, 0)
                  / nullif(extract(epoch FROM least(now(), %(until)s) - %(since)s), 0))::numeric, 4)
           AS in_sync_share,
       coalesce(r.recon_versions, 0) AS recon_versions,
       r.consistency_score, r.mean_consistency, r.min_consistency, r.synchronized_share,
       r.mean_sync_latency_ms, r.p95_sync_latency_ms, r.max_sync_latency_ms, r.max_conflicts
FROM per_twin p
LEFT JOIN desync d USING (twin_id)
LEFT JOIN recon r USING (twin_id)
ORDER BY in_sync_share, r.mean_consistency NULLS LAST, good_share, p.twin_id;
