-- 0011: alerts (current state, one row per alert) and alert_events (every version, history).
-- Alert ids are deterministic (twin, kind, opened_at), every change bumps `version`;
-- writers upsert with "newer version wins" and states only move forward
-- (open -> acknowledged -> resolved), so replays never duplicate or roll back.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id         text        NOT NULL,
    twin_id          text        NOT NULL,
    kind             text        NOT NULL,   -- anomaly | failure | forecast_breach | desync
    state            text        NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    severity         text        NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    version          integer     NOT NULL,
    opened_at        timestamptz NOT NULL,
    acked_at         timestamptz,
    acked_by         text,
    resolved_at      timestamptz,
    resolved_by      text,                   -- a person, or 'auto' (condition cleared)
    escalation_level integer     NOT NULL DEFAULT 0,
    flapping         boolean     NOT NULL DEFAULT false,
    summary          text        NOT NULL DEFAULT '',
    evidence         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (alert_id, opened_at)
);
COMMENT ON TABLE alerts IS 'Predictive-maintenance alerts, latest version of each (twinflow)';

CREATE TABLE IF NOT EXISTS alert_events (
    alert_id  text        NOT NULL,
    version   integer     NOT NULL,
    ts        timestamptz NOT NULL,
    twin_id   text        NOT NULL,
    kind      text        NOT NULL,
    event     text        NOT NULL,   -- opened | severity | escalated | acknowledged | resolved
    state     text        NOT NULL,
    severity  text        NOT NULL,
    actor     text,
    evidence  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (alert_id, version, ts)
);
COMMENT ON TABLE alert_events IS 'Every version of every alert (twinflow)';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- alerts rows are updated in place (ack, resolve): a hypertable without compression.
        PERFORM create_hypertable('alerts', by_range('opened_at', INTERVAL '30 days'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('alert_events', by_range('ts', INTERVAL '30 days'),
                                  if_not_exists => TRUE, migrate_data => TRUE);
        ALTER TABLE alert_events SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'twin_id', timescaledb.compress_orderby = 'ts DESC');
        PERFORM add_compression_policy('alert_events', INTERVAL '90 days', if_not_exists => TRUE);
        PERFORM add_retention_policy('alert_events', INTERVAL '730 days', if_not_exists => TRUE);
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS alerts_id ON alerts (alert_id);
CREATE INDEX IF NOT EXISTS alerts_twin_opened ON alerts (twin_id, opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_unresolved ON alerts (state) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alert_events_twin_ts ON alert_events (twin_id, ts DESC);
