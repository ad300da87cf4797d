-- 0010: outputs of the online models (issue 5), written by flows/alerts.py.
-- Every table has a natural identity so replays after recovery upsert instead of duplicating.

-- Per-twin anomaly score with per-sensor contributions ({"sensor": share, ...}, shares sum to ~1).
CREATE TABLE IF NOT EXISTS anomaly_scores (
    twin_id       text             NOT NULL,
    ts            timestamptz      NOT NULL,
    score         double precision NOT NULL,
    threshold     double precision NOT NULL,
    is_anomaly    boolean          NOT NULL,
    contributions jsonb            NOT NULL DEFAULT '{}'::jsonb,
    model         text             NOT NULL DEFAULT '',
    PRIMARY KEY (twin_id, ts)
);
COMMENT ON TABLE anomaly_scores IS 'Per-twin anomaly score; contributions = {sensor: share} (twinflow)';

-- Per-sensor forecast point: made at ts for target_ts, with a prediction interval and the
-- predicted time the sensor crosses its limit (NULL: no breach within the horizon).
CREATE TABLE IF NOT EXISTS forecasts (
    twin_id     text             NOT NULL,
    sensor      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    target_ts   timestamptz      NOT NULL,
    predicted   double precision NOT NULL,
    lower       double precision,
    upper       double precision,
    limit_value double precision,
    breach_at   timestamptz,
    PRIMARY KEY (twin_id, sensor, ts, target_ts)
);
COMMENT ON TABLE forecasts IS 'Per-sensor forecast made at ts for target_ts with interval [lower, upper] (twinflow)';

-- Remaining useful life (seconds) and failure probability within the model's horizon.
CREATE TABLE IF NOT EXISTS failure_predictions (
    twin_id             text             NOT NULL,
    ts                  timestamptz      NOT NULL,
    rul_s               double precision NOT NULL,
    failure_probability double precision NOT NULL,
    uncertainty         double precision,
    horizon_s           double precision,
    PRIMARY KEY (twin_id, ts)
);
COMMENT ON TABLE failure_predictions IS 'Remaining useful life (s) and failure probability per twin (twinflow)';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('anomaly_scores', by_range('ts', INTERVAL '1 day'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('forecasts', by_range('ts', INTERVAL '1 day'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('failure_predictions', by_range('ts', INTERVAL '7 days'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        ALTER TABLE anomaly_scores SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'twin_id', timescaledb.compress_orderby = 'ts DESC');
        ALTER TABLE forecasts SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'twin_id, sensor', timescaledb.compress_orderby = 'ts DESC');
        ALTER TABLE failure_predictions SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'twin_id', timescaledb.compress_orderby = 'ts DESC');
        PERFORM add_compression_policy('anomaly_scores', INTERVAL '7 days', if_not_exists => TRUE);
        PERFORM add_compression_policy('forecasts', INTERVAL '7 days', if_not_exists => TRUE);
        PERFORM add_compression_policy('failure_predictions', INTERVAL '30 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('anomaly_scores', INTERVAL '180 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('forecasts', INTERVAL '90 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('failure_predictions', INTERVAL '365 days', if_not_exists => TRUE);
    ELSE
        CREATE INDEX IF NOT EXISTS anomaly_scores_ts_brin ON anomaly_scores USING brin (ts);
        CREATE INDEX IF NOT EXISTS forecasts_ts_brin ON forecasts USING brin (ts);
        CREATE INDEX IF NOT EXISTS failure_predictions_ts_brin ON failure_predictions USING brin (ts);
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS anomaly_scores_twin_ts ON anomaly_scores (twin_id, ts DESC);
CREATE INDEX IF NOT EXISTS forecasts_twin_target ON forecasts (twin_id, sensor, target_ts DESC);
CREATE INDEX IF NOT EXISTS failure_predictions_twin_ts ON failure_predictions (twin_id, ts DESC);
