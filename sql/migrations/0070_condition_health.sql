-- 0070: the slow time scale of the online models (issue 12, docs/ml.md "Two time scales").
-- Per score row: the detector behind it (kind: novelty | condition | relation | sensor_fault, empty
-- when normal), the twin's health index in [0, 1] against its healthy reference (NULL until the
-- reference is learned) with the sensors that lower it, and the sensors judged faulty.
-- Nullable columns: added the same way on plain PostgreSQL and on (compressed) TimescaleDB hypertables.
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS kind text;
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS health double precision;
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS drivers jsonb;
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS sensor_faults jsonb;
COMMENT ON COLUMN anomaly_scores.score IS 'Bounded anomaly score in [0, 1): S / (S + 10), S = -log10 p (twinflow)';
COMMENT ON COLUMN anomaly_scores.kind IS 'Detector behind the row: novelty, condition, relation, sensor_fault; empty when normal (twinflow)';
COMMENT ON COLUMN anomaly_scores.health IS 'Health index in [0, 1] against the healthy reference; NULL while it is learned (twinflow)';
COMMENT ON COLUMN anomaly_scores.drivers IS 'Sensors that lower the health: {sensor: its own health} (twinflow)';
COMMENT ON COLUMN anomaly_scores.sensor_faults IS 'Faulty sensors: {sensor: frozen | out_of_range | spikes | quantised | silent} (twinflow)';

-- The latest health of every twin (Grafana's fleet panel, `twinflow` analysts).
CREATE OR REPLACE VIEW twin_health AS
SELECT DISTINCT ON (twin_id)
       twin_id, ts, health, drivers, sensor_faults, kind, score, is_anomaly
FROM anomaly_scores
ORDER BY twin_id, ts DESC;
COMMENT ON VIEW twin_health IS 'Latest health index, drivers and sensor faults per twin (twinflow)';
