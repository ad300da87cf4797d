-- 0140: each model's outputs are rows of their own (docs/sql.md "Several models per twin").
-- anomaly_scores and failure_predictions were keyed by (twin_id, ts), forecasts by
-- (twin_id, sensor, ts, target_ts): a model of your own (docs/alerts.md "A model of your own")
-- scoring the same instants as the built-in models overwrote their rows, or they its. The key
-- now ends with `model` (the record's `model`; '' when it named none, as every row before 0140
-- that had no such column), so both are kept and a replay of a record still finds its own row.
-- twinflow_model_source(model) is the source the alerts flow judges a record by
-- (operators.records.alerts.source_of): 'twinflow' for the built-in models ('', 'twinflow',
-- 'twinflow-…'), else the model's name; the readers show the built-in models' rows by default.
-- Safe to re-run: a table whose key already ends with model is left alone. The key is rebuilt
-- once per table under an ACCESS EXCLUSIVE lock; on TimescaleDB a hypertable's compressed chunks
-- are decompressed first (a unique index cannot be built over them; the compression policy
-- compresses them again) and the key includes ts (the dimension), as a unique index there must.

CREATE OR REPLACE FUNCTION twinflow_model_source(model text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN model IS NULL OR model IN ('', 'twinflow') OR starts_with(model, 'twinflow-')
                THEN 'twinflow' ELSE model END
$$;
COMMENT ON FUNCTION twinflow_model_source(text) IS
    'The source of a model output row: twinflow for the built-in models, else the model (twinflow)';

DO $$
DECLARE
    spec text[];
    tbl text;
    want text;
    key_name text;
    key_cols text;
    chunk regclass;
BEGIN
    FOREACH spec SLICE 1 IN ARRAY ARRAY[
        ['anomaly_scores', 'twin_id,ts,model'],
        ['failure_predictions', 'twin_id,ts,model'],
        ['forecasts', 'twin_id,sensor,ts,target_ts,model']
    ] LOOP
        tbl := spec[1];
        want := spec[2];
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS model text NOT NULL DEFAULT %L', tbl, '');
        EXECUTE format('COMMENT ON COLUMN %I.model IS %L', tbl,
                       'The model that made the row; empty: none named, the built-in models (twinflow)');
        SELECT c.conname, string_agg(a.attname, ',' ORDER BY k.n)
          INTO key_name, key_cols
          FROM pg_constraint c
          CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
         WHERE c.conrelid = tbl::regclass AND c.contype = 'p'
         GROUP BY c.conname;
        -- the key (twin_id, ts, model) serves the reads of (twin_id, ts DESC) as 0100's did: that index
        -- goes again if 0010 is re-applied by hand (0100 keeps it where the key is not (twin_id, ts))
        IF tbl <> 'forecasts' THEN
            EXECUTE format('DROP INDEX IF EXISTS %I', tbl || '_twin_ts');
        END IF;
        CONTINUE WHEN key_cols = want;
        -- a hand-made table's nullable model: NULL is a row that named no model
        EXECUTE format('UPDATE %I SET model = %L WHERE model IS NULL', tbl, '');
        EXECUTE format('ALTER TABLE %I ALTER COLUMN model SET DEFAULT %L, ALTER COLUMN model SET NOT NULL', tbl, '');
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
            FOR chunk IN
                SELECT format('%I.%I', chunk_schema, chunk_name)::regclass
                  FROM timescaledb_information.chunks
                 WHERE hypertable_schema = current_schema() AND hypertable_name = tbl AND is_compressed
            LOOP
                PERFORM decompress_chunk(chunk, if_compressed => TRUE);
            END LOOP;
        END IF;
        IF key_name IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', tbl, key_name);
        END IF;
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (%s)', tbl, tbl || '_pkey',
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(string_to_array(want, ',')) AS c));
    END LOOP;
END
$$;

-- The latest health of every twin: the built-in models' rows (a model of your own may score the
-- same instants; its rows are in anomaly_scores with its model).
CREATE OR REPLACE VIEW twin_health AS
SELECT DISTINCT ON (twin_id)
       twin_id, ts, health, drivers, sensor_faults, kind, score, is_anomaly
FROM anomaly_scores
WHERE twinflow_model_source(model) = 'twinflow'
ORDER BY twin_id, ts DESC;
COMMENT ON VIEW twin_health IS 'Latest health index, drivers and sensor faults per twin, built-in models (twinflow)';
