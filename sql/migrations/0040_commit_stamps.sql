-- 0040: per-row write times for end-to-end latency (issue 7, benchmarks/e2e.py).
-- now() is the transaction start (before the batch's COPY); clock_timestamp() is taken per row
-- when it is inserted, a few milliseconds before the commit. Only defaults change: nothing is
-- rewritten, and the statements are the same on plain PostgreSQL and on TimescaleDB hypertables.
ALTER TABLE telemetry ALTER COLUMN ingested_at SET DEFAULT clock_timestamp();

-- When the score row was first written (NULL for rows written before this migration).
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS written_at timestamptz;
ALTER TABLE anomaly_scores ALTER COLUMN written_at SET DEFAULT clock_timestamp();
COMMENT ON COLUMN anomaly_scores.written_at IS 'When the row was first inserted (clock_timestamp(); twinflow)';
