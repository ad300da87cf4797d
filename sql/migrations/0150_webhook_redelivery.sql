-- 0150: who queued a failed webhook delivery again, and when (docs/alerts.md, "Webhook delivery"):
-- `twinflow alerts redeliver` (its --by) and `POST /api/v1/alerts/{id}/redeliver` (the token's subject)
-- record it on the row, which `twinflow alerts deliveries` and `GET /api/v1/alerts/deliveries` show.
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS redelivered_by text;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS redelivered_at timestamptz;
