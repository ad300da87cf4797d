-- 0120: a twin state version keeps its what-if values (docs/reconciliation.md, docs/api.md).
-- `simulated` ({param: {value, ts}}: readings of the simulation sources, mode simulating) was only in the
-- published document (twin.state); the history left it out, so GET /api/v1/twins/{id} answered with it
-- from the live state but without it from the database, and a twin resumed from the history lost it.
-- Versions written before this migration have NULL (not recorded); the twin sink writes it from now on.
-- Adding a nullable column without a default rewrites nothing. Safe to re-run.
ALTER TABLE twin_state_history ADD COLUMN IF NOT EXISTS simulated jsonb;
COMMENT ON COLUMN twin_state_history.simulated IS
    'What-if values {param: {value, ts}} of this version; NULL: written before migration 0120';
