-- 0021: least-privilege grants for the login roles of the secure stack (docs/security.md).
-- A no-op where the roles do not exist. The flow's role may only add telemetry rows: the
-- idempotent sink needs INSERT, and ON CONFLICT needs to read the identity columns only.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_ingest') THEN
        GRANT INSERT, SELECT (twin_id, sensor, ts) ON telemetry TO twinflow_ingest;
    END IF;
END
$$;
