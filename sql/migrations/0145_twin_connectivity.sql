-- 0145: a twin state version says whether its device can be reached (docs/reconciliation.md, "Connectivity").
-- `connectivity` ({state: online|offline|unknown, since, reason}) is in the published document (twin.state)
-- and now in the history; versions written before this migration have NULL (not recorded).
-- A twin whose device cannot be reached has status `offline` (mode normal): the status check allows it.
-- The new check is a superset of the old one, so existing rows need no scan (NOT VALID). Safe to re-run.
ALTER TABLE twin_state_history ADD COLUMN IF NOT EXISTS connectivity jsonb;
COMMENT ON COLUMN twin_state_history.connectivity IS
    'Whether the device could be reached at this version: {state, since, reason}; NULL: written before migration 0145';

ALTER TABLE twin_state_history DROP CONSTRAINT IF EXISTS twin_state_history_status_check;
ALTER TABLE twin_state_history ADD CONSTRAINT twin_state_history_status_check
    CHECK (status IN ('synchronized', 'desynced', 'simulating', 'maintenance', 'offline')) NOT VALID;

-- The view's * was expanded when it was created: recreate it to include the new column.
CREATE OR REPLACE VIEW twin_state_current AS
    SELECT DISTINCT ON (twin_id) *
    FROM twin_state_history
    ORDER BY twin_id, version DESC;
