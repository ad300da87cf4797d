-- 0155: people's CLI in the secure profile (role twinflow_operator, twinflow/stack/secure) acts on alerts
-- and on the twins' models, as docs/security.md ("Alert actions and model control") describes: each action is
-- authorized by the policy and its decision appended to the audit chain before it is taken, so the role
-- appends to desired_audit (INSERT only: the chain's triggers refuse UPDATE and DELETE for everyone), reads
-- the alerts and the webhook outbox (`twinflow alerts list | deliveries | metrics`) and applies an allowed
-- action to its alert row at once (`ack`, `shelve`, …) or queues failed deliveries again (`redeliver`).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_operator') THEN
        GRANT SELECT, INSERT ON desired_audit TO twinflow_operator;
        GRANT USAGE ON SEQUENCE desired_audit_id_seq TO twinflow_operator;
        GRANT SELECT, UPDATE ON alerts, webhook_outbox TO twinflow_operator;
        GRANT SELECT ON alert_events TO twinflow_operator;
    END IF;
END
$$;
