-- 0001: telemetry readings, one row per sensor value.
-- Identity (twin_id, sensor, ts) makes every write idempotent: a replay after
-- recovery or a retried batch inserts nothing twice (ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS telemetry (
    twin_id     text             NOT NULL,
    sensor      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    value       double precision NOT NULL,
    seq         bigint           NOT NULL,
    quality     smallint         NOT NULL DEFAULT 0,   -- 0 good, 1 uncertain, 2 bad
    source      text             NOT NULL,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (twin_id, sensor, ts)
);
COMMENT ON TABLE telemetry IS 'One row per sensor value of a telemetry envelope (twinflow)';
COMMENT ON COLUMN telemetry.quality IS '0 good, 1 uncertain, 2 bad (envelope quality)';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        ALTER TABLE telemetry SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'twin_id, sensor',
            timescaledb.compress_orderby = 'ts DESC'
        );
        PERFORM add_compression_policy('telemetry', INTERVAL '7 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('telemetry', INTERVAL '90 days', if_not_exists => TRUE);
    ELSE
        -- Plain PostgreSQL: a BRIN index keeps time-range scans cheap on an append-mostly table.
        CREATE INDEX IF NOT EXISTS telemetry_ts_brin ON telemetry USING brin (ts)
            WITH (pages_per_range = 32);
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS telemetry_twin_ts ON telemetry (twin_id, ts DESC);
