-- 0080: ISA-18.2 alarm states on alerts (docs/alerts.md): the process condition, the alarm state
-- (unack_active | ack_active | unack_cleared | shelved | suppressed | out_of_service | normal),
-- shelving with expiry and reason, suppression by design, out of service, standing alarms and the
-- number of re-annunciations (a re-annunciated alarm is unacknowledged again: `reopened` orders it).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS isa_state text NOT NULL DEFAULT 'unack_active';
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS condition text NOT NULL DEFAULT 'active';
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS shelved_until timestamptz;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS shelved_by text;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS shelve_reason text NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS suppressed_by text;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS out_of_service boolean NOT NULL DEFAULT false;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS standing boolean NOT NULL DEFAULT false;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS reopened integer NOT NULL DEFAULT 0;
UPDATE alerts SET isa_state = CASE state WHEN 'resolved' THEN 'normal' WHEN 'acknowledged' THEN 'ack_active'
                                         ELSE 'unack_active' END
WHERE isa_state = 'unack_active' AND state <> 'open';
ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_isa_state_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_isa_state_check CHECK (isa_state IN
    ('unack_active', 'ack_active', 'unack_cleared', 'shelved', 'suppressed', 'out_of_service', 'normal'));
COMMENT ON COLUMN alerts.isa_state IS 'ISA-18.2 alarm state (twinflow, docs/alerts.md)';
COMMENT ON COLUMN alerts.flapping IS 'Chattering: flap_count openings within flap_window_s (twinflow)';
CREATE INDEX IF NOT EXISTS alerts_isa_state ON alerts (isa_state) WHERE isa_state <> 'normal';

ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS isa_state text;

-- Annunciations: an alarm presented to an operator (opened unsuppressed, or annunciated again when
-- its shelving or suppression ended or it returned to service). The alarm rate per operator-hour and
-- flood periods (ISA-18.2: > 10 alarms per operator in 10 minutes) are counted from these.
CREATE OR REPLACE VIEW alarm_annunciations AS
    SELECT alert_id, twin_id, kind, ts, event, severity
    FROM alert_events
    WHERE isa_state = 'unack_active' AND event IN ('opened', 'unshelved', 'unsuppressed', 'in_service', 'reactivated');
COMMENT ON VIEW alarm_annunciations IS 'Alarms presented to operators (ISA-18.2 alarm rate; twinflow)';
