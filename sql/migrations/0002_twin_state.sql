-- 0002: twin reconciliation (docs/reconciliation.md).
-- Every table is written idempotently: a Bytewax recovery replay or a retried batch leaves one row
-- per identity, and a newer version of a row overwrites an older one, never the reverse.

-- One row per state change of a twin; (twin_id, version) is the identity, versions have no gaps.
CREATE TABLE IF NOT EXISTS twin_state_history (
    twin_id           text             NOT NULL,
    version           bigint           NOT NULL CHECK (version > 0),
    event_time        timestamptz      NOT NULL,   -- the twin's event-time clock at this version
    status            text             NOT NULL
        CHECK (status IN ('synchronized', 'desynced', 'simulating', 'maintenance')),
    mode              text             NOT NULL,   -- operator mode: normal | maintenance | simulating
    learn             boolean          NOT NULL,   -- false: models must not learn from this period
    reported          jsonb            NOT NULL,   -- {param: {value, ts}}
    desired           jsonb            NOT NULL,   -- {param: {value, ts, author}}
    delta             jsonb            NOT NULL,   -- {param: desired - reported}
    conflicts         text[]           NOT NULL,   -- parameters not synchronized
    commands          jsonb            NOT NULL,   -- {param: {command_id, value, attempt, status}}
    consistency_score double precision NOT NULL CHECK (consistency_score BETWEEN 0 AND 1),
    sync_latency_ms   double precision,
    last_sync_time    timestamptz,
    desync_since      timestamptz,
    change            jsonb            NOT NULL,   -- audit: {cause, author, reason, fields: {path: [old, new]}}
    recorded_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (twin_id, version)
);
COMMENT ON TABLE twin_state_history IS 'One row per twin state version, with the audit entry of the change (twinflow)';
CREATE INDEX IF NOT EXISTS twin_state_history_time ON twin_state_history (twin_id, event_time DESC, version DESC);

-- The newest version of every twin.
CREATE OR REPLACE VIEW twin_state_current AS
    SELECT DISTINCT ON (twin_id) *
    FROM twin_state_history
    ORDER BY twin_id, version DESC;

-- Event-time window aggregates per twin, sensor and window size; a correction is a higher version.
CREATE TABLE IF NOT EXISTS telemetry_windows (
    twin_id      text             NOT NULL,
    sensor       text             NOT NULL,
    window_size  text             NOT NULL,   -- '1s', '1m', …
    window_start timestamptz      NOT NULL,
    window_end   timestamptz      NOT NULL,
    count        bigint           NOT NULL,
    mean         double precision NOT NULL,
    min          double precision NOT NULL,
    max          double precision NOT NULL,
    last         double precision NOT NULL,
    stddev       double precision,             -- sample standard deviation; NULL for one reading
    version      integer          NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (twin_id, sensor, window_size, window_start)
);
COMMENT ON TABLE telemetry_windows IS 'Event-time tumbling window aggregates; late readings within the lateness bump version';

-- Sync quality over time: one point per twin state version.
CREATE TABLE IF NOT EXISTS twin_sync_quality (
    twin_id           text             NOT NULL,
    ts                timestamptz      NOT NULL,
    version           bigint           NOT NULL,
    status            text             NOT NULL,
    consistency_score double precision NOT NULL,
    sync_latency_ms   double precision,
    conflicts         integer          NOT NULL,
    PRIMARY KEY (twin_id, ts, version)
);
COMMENT ON TABLE twin_sync_quality IS 'Consistency score, status and sync latency of each twin over time';
-- One point per version: the sink replaces a version's point even when a replay gives it another time.
CREATE INDEX IF NOT EXISTS twin_sync_quality_version ON twin_sync_quality (twin_id, version);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('telemetry_windows', by_range('window_start', INTERVAL '1 day'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('twin_sync_quality', by_range('ts', INTERVAL '1 day'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        -- Continuous aggregate: hourly sync quality per twin (telemetry rollups: 0012).
        EXECUTE $sql$
            CREATE MATERIALIZED VIEW IF NOT EXISTS twin_sync_quality_hourly
            WITH (timescaledb.continuous) AS
            SELECT twin_id, time_bucket(INTERVAL '1 hour', ts) AS bucket,
                   avg(consistency_score) AS mean_consistency, min(consistency_score) AS min_consistency,
                   avg(sync_latency_ms) AS mean_sync_latency_ms, max(sync_latency_ms) AS max_sync_latency_ms,
                   avg(CASE WHEN status = 'synchronized' THEN 1.0 ELSE 0.0 END) AS synchronized_share
            FROM twin_sync_quality
            GROUP BY twin_id, bucket
            WITH NO DATA
        $sql$;
        PERFORM add_continuous_aggregate_policy('twin_sync_quality_hourly', start_offset => INTERVAL '3 days',
            end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
    ELSE
        -- Plain PostgreSQL: the same name as an ordinary view (computed at query time).
        CREATE OR REPLACE VIEW twin_sync_quality_hourly AS
            SELECT twin_id, date_trunc('hour', ts) AS bucket,
                   avg(consistency_score) AS mean_consistency, min(consistency_score) AS min_consistency,
                   avg(sync_latency_ms) AS mean_sync_latency_ms, max(sync_latency_ms) AS max_sync_latency_ms,
                   avg(CASE WHEN status = 'synchronized' THEN 1.0 ELSE 0.0 END) AS synchronized_share
            FROM twin_sync_quality
            GROUP BY twin_id, bucket;
        CREATE INDEX IF NOT EXISTS twin_sync_quality_ts_brin ON twin_sync_quality USING brin (ts);
    END IF;
END
$$;
