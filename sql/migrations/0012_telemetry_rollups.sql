-- 0012: telemetry rolled up per twin, sensor and 1 minute / 1 hour.
-- TimescaleDB: continuous aggregates (real-time: recent buckets are computed on the fly) with
-- refresh, compression and retention policies. Plain PostgreSQL: ordinary views with the same
-- columns, aggregating with date_bin on each query.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                       WHERE view_name = 'telemetry_1m') THEN
            EXECUTE $v$
                CREATE MATERIALIZED VIEW telemetry_1m
                WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                SELECT twin_id, sensor, time_bucket(INTERVAL '1 minute', ts) AS bucket,
                       count(*) AS n, avg(value) AS avg_value, min(value) AS min_value,
                       max(value) AS max_value, count(*) FILTER (WHERE quality > 0) AS not_good
                FROM telemetry GROUP BY twin_id, sensor, time_bucket(INTERVAL '1 minute', ts)
                WITH NO DATA $v$;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                       WHERE view_name = 'telemetry_1h') THEN
            EXECUTE $v$
                CREATE MATERIALIZED VIEW telemetry_1h
                WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
                SELECT twin_id, sensor, time_bucket(INTERVAL '1 hour', ts) AS bucket,
                       count(*) AS n, avg(value) AS avg_value, min(value) AS min_value,
                       max(value) AS max_value, count(*) FILTER (WHERE quality > 0) AS not_good
                FROM telemetry GROUP BY twin_id, sensor, time_bucket(INTERVAL '1 hour', ts)
                WITH NO DATA $v$;
        END IF;
        PERFORM add_continuous_aggregate_policy('telemetry_1m', start_offset => INTERVAL '2 hours',
            end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);
        PERFORM add_continuous_aggregate_policy('telemetry_1h', start_offset => INTERVAL '3 days',
            end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
        ALTER MATERIALIZED VIEW telemetry_1m SET (timescaledb.compress = true);
        ALTER MATERIALIZED VIEW telemetry_1h SET (timescaledb.compress = true);
        PERFORM add_compression_policy('telemetry_1m', compress_after => INTERVAL '7 days', if_not_exists => TRUE);
        PERFORM add_compression_policy('telemetry_1h', compress_after => INTERVAL '30 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('telemetry_1m', drop_after => INTERVAL '365 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('telemetry_1h', drop_after => INTERVAL '1825 days', if_not_exists => TRUE);
    ELSE
        CREATE OR REPLACE VIEW telemetry_1m AS
            SELECT twin_id, sensor, date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-01') AS bucket,
                   count(*) AS n, avg(value) AS avg_value, min(value) AS min_value,
                   max(value) AS max_value, count(*) FILTER (WHERE quality > 0) AS not_good
            FROM telemetry GROUP BY 1, 2, 3;
        CREATE OR REPLACE VIEW telemetry_1h AS
            SELECT twin_id, sensor, date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01') AS bucket,
                   count(*) AS n, avg(value) AS avg_value, min(value) AS min_value,
                   max(value) AS max_value, count(*) FILTER (WHERE quality > 0) AS not_good
            FROM telemetry GROUP BY 1, 2, 3;
    END IF;
END
$$;
COMMENT ON VIEW telemetry_1m IS 'Telemetry per twin, sensor and minute (twinflow)';
COMMENT ON VIEW telemetry_1h IS 'Telemetry per twin, sensor and hour (twinflow)';
