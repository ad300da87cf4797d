-- 0020: append-only, hash-chained audit trail of desired-state decisions, and refusals.
-- Each row stores sha256 over its canonical content plus the previous row's hash
-- (connectors/postgres/audit.py computes and verifies it; `twinflow audit verify`).
-- UPDATE, DELETE and TRUNCATE are refused by triggers for everyone, and not granted to the
-- writer role; tampering that bypasses them still breaks the chain.
CREATE TABLE IF NOT EXISTS desired_audit (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor      text        NOT NULL,
    twin_id    text        NOT NULL,
    old        jsonb,
    new        jsonb       NOT NULL,
    version    bigint,
    decision   text        NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason     text        NOT NULL,
    detail     text        NOT NULL DEFAULT '',
    prev_hash  text        NOT NULL,
    hash       text        NOT NULL UNIQUE
);
COMMENT ON TABLE desired_audit IS 'Append-only, hash-chained audit of desired-state decisions (twinflow)';
CREATE INDEX IF NOT EXISTS desired_audit_twin ON desired_audit (twin_id, id);

CREATE TABLE IF NOT EXISTS desired_rejections (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    twin_id   text        NOT NULL,
    actor     text        NOT NULL,
    request   jsonb       NOT NULL,
    reason    text        NOT NULL,
    detail    text        NOT NULL DEFAULT '',
    audit_id  bigint      REFERENCES desired_audit (id)
);
COMMENT ON TABLE desired_rejections IS 'Desired-state updates refused by the policy (twinflow)';
CREATE INDEX IF NOT EXISTS desired_rejections_twin ON desired_rejections (twin_id, at DESC);

CREATE OR REPLACE FUNCTION twinflow_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS desired_audit_append_only ON desired_audit;
CREATE TRIGGER desired_audit_append_only BEFORE UPDATE OR DELETE ON desired_audit
    FOR EACH ROW EXECUTE FUNCTION twinflow_append_only();
DROP TRIGGER IF EXISTS desired_audit_no_truncate ON desired_audit;
CREATE TRIGGER desired_audit_no_truncate BEFORE TRUNCATE ON desired_audit
    FOR EACH STATEMENT EXECUTE FUNCTION twinflow_append_only();
DROP TRIGGER IF EXISTS desired_rejections_append_only ON desired_rejections;
CREATE TRIGGER desired_rejections_append_only BEFORE UPDATE OR DELETE ON desired_rejections
    FOR EACH ROW EXECUTE FUNCTION twinflow_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON desired_audit, desired_rejections FROM PUBLIC;

-- Least privilege (the secure stack creates these roles): the writer may only append and read.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_audit_writer') THEN
        GRANT SELECT, INSERT ON desired_audit, desired_rejections TO twinflow_audit_writer;
        GRANT USAGE ON SEQUENCE desired_audit_id_seq, desired_rejections_id_seq TO twinflow_audit_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_reader') THEN
        GRANT SELECT ON desired_audit, desired_rejections TO twinflow_reader;
    END IF;
END
$$;
