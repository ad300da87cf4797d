-- 0013: group roles. twinflow_writer: the flows (read + insert/update); twinflow_reader: Grafana
-- and analysts (read only). Both are NOLOGIN groups: grant them to login roles, e.g.
--   CREATE ROLE grafana LOGIN PASSWORD '...' IN ROLE twinflow_reader;
-- The owner role that runs the migrations is left as it is. When it may not create roles
-- (no CREATEROLE), a superuser runs once:
--   CREATE ROLE twinflow_writer NOLOGIN; CREATE ROLE twinflow_reader NOLOGIN;
--   SELECT twinflow_grant_roles();
DO $$
DECLARE
    may_create boolean;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_writer') THEN
        IF may_create THEN
            CREATE ROLE twinflow_writer NOLOGIN;
        ELSE
            RAISE NOTICE 'role twinflow_writer missing and % may not create roles; a superuser runs: CREATE ROLE twinflow_writer NOLOGIN; SELECT twinflow_grant_roles();', current_user;
        END IF;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_reader') THEN
        IF may_create THEN
            CREATE ROLE twinflow_reader NOLOGIN;
        ELSE
            RAISE NOTICE 'role twinflow_reader missing and % may not create roles; a superuser runs: CREATE ROLE twinflow_reader NOLOGIN; SELECT twinflow_grant_roles();', current_user;
        END IF;
    END IF;
END
$$;

-- Grants for every table and view of this schema, now and (default privileges) later.
-- Idempotent; returns what it did. Re-run it after creating the roles by hand.
CREATE OR REPLACE FUNCTION twinflow_grant_roles() RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    owner_role text;
    done text := '';
BEGIN
    SELECT tableowner INTO owner_role FROM pg_tables
    WHERE schemaname = current_schema() AND tablename = 'twinflow_migrations';
    owner_role := coalesce(owner_role, current_user);
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_reader') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO twinflow_reader', current_schema());
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO twinflow_reader', current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO twinflow_reader',
                       owner_role, current_schema());
        done := done || 'twinflow_reader ';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_writer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO twinflow_writer', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA %I TO twinflow_writer',
                       current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT, UPDATE ON TABLES TO twinflow_writer',
                       owner_role, current_schema());
        done := done || 'twinflow_writer ';
    END IF;
    RETURN CASE WHEN done = '' THEN 'no roles to grant' ELSE 'granted: ' || trim(done) END;
END
$fn$;

SELECT twinflow_grant_roles();
