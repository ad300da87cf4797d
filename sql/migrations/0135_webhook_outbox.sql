-- 0135: the webhook outbox (docs/alerts.md, "Webhook"). The alerts flow writes one row per alert
-- version meant for the webhook, in the transaction that writes the version to `alerts` and
-- `alert_events` (ON CONFLICT DO NOTHING: a replay never queues a version again). Its delivery
-- thread POSTs them in version order per alert, retries with backoff, and records the outcome:
-- `delivered`, or `failed` with the reason (refused by the receiver, or not delivered within
-- alerts.webhook_retention_s). Settled rows are deleted a retention period after they settled.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    alert_id        text        NOT NULL,
    version         integer     NOT NULL,
    twin_id         text        NOT NULL,
    body            text        NOT NULL,   -- the JSON POSTed (the alert version, as on twin.alerts)
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    settled_at      timestamptz,            -- when it was delivered or failed
    http_status     integer,                -- the receiver's last answer (NULL: none, e.g. a network error)
    last_error      text,                   -- why the last attempt failed, or why it failed for good
    PRIMARY KEY (alert_id, version)
);
COMMENT ON TABLE webhook_outbox IS 'Alert versions to POST to alerts.webhook_url, and their delivery (twinflow)';

CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox (alert_id, version) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_outbox_settled ON webhook_outbox (settled_at) WHERE state <> 'pending';
CREATE INDEX IF NOT EXISTS webhook_outbox_twin ON webhook_outbox (twin_id, created_at DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'twinflow_writer') THEN
        GRANT DELETE ON webhook_outbox TO twinflow_writer;  -- the retention's clean-up
    END IF;
END
$$;
