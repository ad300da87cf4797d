-- 0090: one index for both of telemetry's read shapes (docs/sql.md "Telemetry indexes").
-- The primary key becomes (twin_id, ts, sensor): the same identity, so a replay still inserts
-- nothing twice (ON CONFLICT (twin_id, sensor, ts) infers a unique index by its columns, in any
-- order), and it serves the reads by (twin, time range) and by (twin, sensor, time range) alike,
-- so telemetry_twin_ts (twin_id, ts DESC) goes. A telemetry row then costs PostgreSQL about 3.3 µs
-- of CPU instead of 7-8 (benchmarks/pg_index_cost.py, RESULTS.md "Telemetry index layouts").
-- The key is rebuilt once, under an ACCESS EXCLUSIVE lock for one index build over the table.
-- Safe to re-run: a key already in this order is left alone. TimescaleDB: the key includes ts (the
-- hypertable's dimension), as a unique index there must; a hypertable that already holds
-- compressed chunks keeps its key and telemetry_twin_ts (a unique index cannot be rebuilt over
-- compressed chunks): decompress them and apply this file's statements by hand if wanted.
DO $$
DECLARE
    key_name text;
    key_cols text;
BEGIN
    SELECT c.conname, string_agg(a.attname, ',' ORDER BY k.n)
      INTO key_name, key_cols
      FROM pg_constraint c
      CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
     WHERE c.conrelid = 'telemetry'::regclass AND c.contype = 'p'
     GROUP BY c.conname;
    IF key_cols = 'twin_id,ts,sensor' THEN
        DROP INDEX IF EXISTS telemetry_twin_ts;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        IF EXISTS (SELECT 1 FROM timescaledb_information.chunks
                   WHERE hypertable_name = 'telemetry' AND is_compressed) THEN
            RAISE NOTICE 'telemetry has compressed chunks: primary key (%) and telemetry_twin_ts kept', key_cols;
            RETURN;
        END IF;
    END IF;
    IF key_name IS NOT NULL THEN
        EXECUTE format('ALTER TABLE telemetry DROP CONSTRAINT %I', key_name);
    END IF;
    ALTER TABLE telemetry ADD CONSTRAINT telemetry_pkey PRIMARY KEY (twin_id, ts, sensor);
    DROP INDEX IF EXISTS telemetry_twin_ts;
END
$$;
