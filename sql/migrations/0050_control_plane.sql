-- 0050: the twin control plane (docs/security.md, docs/reconciliation.md).
-- * desired_requests: one row per twin.desired record the gate decided (its Kafka position,
--   request id and verdict, linked to its audit row): the memory for replays and restarts.
-- * twin_state_history is append-only: the pipeline only inserts; UPDATE, DELETE and TRUNCATE
--   are refused by triggers for everyone and not granted to any role of twinflow.
-- * desired_version: the version of the desired document (values and mode) at each state version.

CREATE TABLE IF NOT EXISTS desired_requests (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    request_id  text        NOT NULL,
    twin_id     text        NOT NULL,
    actor       text        NOT NULL,
    via         text,
    decision    text        NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason      text        NOT NULL,
    detail      text        NOT NULL DEFAULT '',
    old         jsonb       NOT NULL,
    new         jsonb       NOT NULL,
    desired_version bigint  NOT NULL,
    audit_id    bigint      NOT NULL REFERENCES desired_audit (id),
    decided_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);
COMMENT ON TABLE desired_requests IS 'Verdicts of the desired-state gate per twin.desired record (twinflow)';
CREATE INDEX IF NOT EXISTS desired_requests_request ON desired_requests (request_id, id);
CREATE INDEX IF NOT EXISTS desired_requests_twin ON desired_requests (twin_id, topic, partition, "offset" DESC);

DROP TRIGGER IF EXISTS desired_requests_append_only ON desired_requests;
CREATE TRIGGER desired_requests_append_only BEFORE UPDATE OR DELETE ON desired_requests
    FOR EACH ROW EXECUTE FUNCTION twinflow_append_only();
DROP TRIGGER IF EXISTS desired_rejections_no_truncate ON desired_rejections;
CREATE TRIGGER desired_rejections_no_truncate BEFORE TRUNCATE ON desired_rejections
    FOR EACH STATEMENT EXECUTE FUNCTION twinflow_append_only();
DROP TRIGGER IF EXISTS desired_requests_no_truncate ON desired_requests;
CREATE TRIGGER desired_requests_no_truncate BEFORE TRUNCATE ON desired_requests
    FOR EACH STATEMENT EXECUTE FUNCTION twinflow_append_only();

ALTER TABLE twin_state_history ADD COLUMN IF NOT EXISTS desired_version bigint NOT NULL DEFAULT 0;
-- The view's * was expanded when it was created: recreate it to include the new column.
CREATE OR REPLACE VIEW twin_state_current AS
    SELECT DISTINCT ON (twin_id) *
    FROM twin_state_history
    ORDER BY twin_id, version DESC;

DROP TRIGGER IF EXISTS twin_state_history_append_only ON twin_state_history;
CREATE TRIGGER twin_state_history_append_only BEFORE UPDATE OR DELETE ON twin_state_history
    FOR EACH ROW EXECUTE FUNCTION twinflow_append_only();
DROP TRIGGER IF EXISTS twin_state_history_no_truncate ON twin_state_history;
CREATE TRIGGER twin_state_history_no_truncate BEFORE TRUNCATE ON twin_state_history
    FOR EACH STATEMENT EXECUTE FUNCTION twinflow_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON twin_state_history, desired_requests FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_writer') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON twin_state_history, desired_audit, desired_rejections, desired_requests
            FROM twinflow_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_audit_writer') THEN
        GRANT SELECT, INSERT ON desired_requests TO twinflow_audit_writer;
        GRANT USAGE ON SEQUENCE desired_requests_id_seq TO twinflow_audit_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_reader') THEN
        GRANT SELECT ON desired_requests, twin_state_current TO twinflow_reader;
    END IF;
    -- The twin flow's login role in the secure profile (twinflow/stack/secure.py): the gate appends
    -- to the audit trail, the sink inserts history and sync quality and upserts window rows.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_twin') THEN
        GRANT SELECT, INSERT ON twin_state_history, twin_sync_quality, desired_audit, desired_rejections,
            desired_requests TO twinflow_twin;
        GRANT SELECT ON twin_state_current TO twinflow_twin;
        GRANT SELECT, INSERT, UPDATE ON telemetry_windows TO twinflow_twin;
        GRANT USAGE ON SEQUENCE desired_audit_id_seq, desired_rejections_id_seq, desired_requests_id_seq
            TO twinflow_twin;
    END IF;
    -- People's CLI in the secure profile (`twin show`, `audit verify`, the known-twin checks): read only.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_operator') THEN
        GRANT SELECT ON twin_state_history, twin_state_current, desired_audit, desired_rejections,
            desired_requests, telemetry_windows, twin_sync_quality TO twinflow_operator;
    END IF;
END
$$;
