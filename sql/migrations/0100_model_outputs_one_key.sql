-- 0100: one index per model-output table's reads (docs/sql.md "Model output indexes").
-- anomaly_scores and failure_predictions had their primary key (twin_id, ts) and a second B-tree
-- on (twin_id, ts DESC) (0010): the same columns in the other direction, which a B-tree scan of
-- the key serves as well (PostgreSQL scans an index backwards for ORDER BY ts DESC). Every row
-- written paid for both. The second index goes where the key is (twin_id, ts); a table whose key
-- differs (a hand-made schema) keeps it. Safe to re-run; on TimescaleDB the drop reaches every chunk.
DO $$
DECLARE
    tbl text;
    key_cols text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['anomaly_scores', 'failure_predictions'] LOOP
        SELECT string_agg(a.attname, ',' ORDER BY k.n)
          INTO key_cols
          FROM pg_constraint c
          CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
         WHERE c.conrelid = tbl::regclass AND c.contype = 'p';
        IF key_cols = 'twin_id,ts' THEN
            EXECUTE format('DROP INDEX IF EXISTS %I', tbl || '_twin_ts');
        ELSE
            RAISE NOTICE '%: primary key (%) is not (twin_id, ts): %_twin_ts kept', tbl, key_cols, tbl;
        END IF;
    END LOOP;
END
$$;
