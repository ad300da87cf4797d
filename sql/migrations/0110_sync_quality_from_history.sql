-- 0110: sync quality is read out of the twin's history, not written a second time
-- (docs/reconciliation.md "Tables").
-- twin_sync_quality held one point per twin state version: (twin_id, event_time, version, status,
-- consistency_score, sync_latency_ms, cardinality(conflicts)) of the version's twin_state_history row,
-- inserted by the twin sink from that row in the same statement. A copy of five of the history's
-- columns, paid for at every version: about 12-16 us of the database's CPU per version, a quarter of
-- what a version costs it (benchmarks/RESULTS.md "Sync quality read from the history").
-- twin_sync_quality is now a view over twin_state_history with the same name and columns, and
-- twin_sync_quality_hourly an ordinary view over it on both servers (it was a continuous aggregate
-- on TimescaleDB). A BRIN index on the history's event_time serves time-range reads across twins.
-- Points of the old table without a history version (inserted by hand: the sink never wrote one
-- alone) are kept, in the table renamed to twin_sync_quality_0110; without any, it is dropped.
-- Safe to re-run.
DO $$
DECLARE
    orphans bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        IF EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                   WHERE view_name = 'twin_sync_quality_hourly') THEN
            DROP MATERIALIZED VIEW twin_sync_quality_hourly;
        END IF;
    END IF;
    DROP VIEW IF EXISTS twin_sync_quality_hourly;
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('twin_sync_quality')) = 'r' THEN
        SELECT count(*) INTO orphans FROM twin_sync_quality q
         WHERE NOT EXISTS (SELECT 1 FROM twin_state_history h WHERE h.twin_id = q.twin_id AND h.version = q.version);
        IF orphans > 0 THEN
            ALTER TABLE twin_sync_quality RENAME TO twin_sync_quality_0110;
            RAISE NOTICE 'twin_sync_quality: % points without a version in twin_state_history kept in twin_sync_quality_0110',
                orphans;
        ELSE
            DROP TABLE twin_sync_quality;
        END IF;
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS twin_state_history_event_time_brin ON twin_state_history USING brin (event_time);

CREATE OR REPLACE VIEW twin_sync_quality AS
    SELECT twin_id, event_time AS ts, version, status, consistency_score, sync_latency_ms,
           cardinality(conflicts) AS conflicts
    FROM twin_state_history;
COMMENT ON VIEW twin_sync_quality IS
    'Consistency score, status and sync latency of each twin over time: one point per twin state version';

CREATE OR REPLACE VIEW twin_sync_quality_hourly AS
    SELECT twin_id, date_trunc('hour', ts) AS bucket,
           avg(consistency_score) AS mean_consistency, min(consistency_score) AS min_consistency,
           avg(sync_latency_ms) AS mean_sync_latency_ms, max(sync_latency_ms) AS max_sync_latency_ms,
           avg(CASE WHEN status = 'synchronized' THEN 1.0 ELSE 0.0 END) AS synchronized_share
    FROM twin_sync_quality
    GROUP BY twin_id, bucket;

-- Read only, for the people and dashboards that read the history (the writers' default privileges would
-- allow more; the twin flow's role, which wrote the points, needs nothing here now).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON twin_sync_quality, twin_sync_quality_hourly FROM PUBLIC;
DO $$
DECLARE
    reader text;
BEGIN
    FOREACH reader IN ARRAY ARRAY['twinflow_reader', 'twinflow_operator'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = reader) THEN
            EXECUTE format('GRANT SELECT ON twin_sync_quality, twin_sync_quality_hourly TO %I', reader);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_writer') THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON twin_sync_quality, twin_sync_quality_hourly FROM twinflow_writer;
        GRANT SELECT ON twin_sync_quality, twin_sync_quality_hourly TO twinflow_writer;
    END IF;
END
$$;
