-- 0060: typed readings (docs/sql.md, "Typed readings"). A reading is a number, a boolean, a text,
-- or no value at all (a device status only, e.g. OPC-UA BadSensorFailure); it may carry the status
-- code name. The identity (twin_id, sensor, ts) and the numeric `value` column stay as they were:
--   value_type 0 number  -> value is the number
--   value_type 1 boolean -> value is 1 (true) or 0 (false)
--   value_type 2 text    -> text_value holds it (value NULL)
--   value NULL otherwise -> no value (quality is then 1 uncertain or 2 bad; `status` says why)
-- Rows of plain numbers take the column defaults (value_type 0, status and text_value NULL).
ALTER TABLE telemetry ALTER COLUMN value DROP NOT NULL;
ALTER TABLE telemetry ADD COLUMN IF NOT EXISTS value_type smallint NOT NULL DEFAULT 0;
ALTER TABLE telemetry ADD COLUMN IF NOT EXISTS status text;
ALTER TABLE telemetry ADD COLUMN IF NOT EXISTS text_value text;
COMMENT ON COLUMN telemetry.value IS 'the number; 1/0 for a boolean (value_type 1); NULL for text or no value (see status)';
COMMENT ON COLUMN telemetry.value_type IS '0 number, 1 boolean, 2 text (table telemetry_value_types)';
COMMENT ON COLUMN telemetry.status IS 'status code name of the reading (e.g. BadSensorFailure), NULL when none was given';
COMMENT ON COLUMN telemetry.text_value IS 'the value of a text reading (value_type 2)';

CREATE TABLE IF NOT EXISTS telemetry_value_types (
    value_type smallint PRIMARY KEY,
    name       text     NOT NULL UNIQUE
);
INSERT INTO telemetry_value_types VALUES (0, 'number'), (1, 'boolean'), (2, 'text') ON CONFLICT DO NOTHING;
COMMENT ON TABLE telemetry_value_types IS 'What a telemetry row holds, by telemetry.value_type (twinflow)';
