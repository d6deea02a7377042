-- Delivery of queued notifications (PostgreSQL): a row is claimed by one sender for a while,
-- retried with backoff, and ends sent, undeliverable (nothing to send it to) or failed
-- (given up). Administrators' own events, which are not recovery audit events, get a table.
ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claim_id TEXT;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
UPDATE outbox SET state = 'sent' WHERE sent_at IS NOT NULL;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE admin_events (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    outbox_seq BIGINT
);
CREATE INDEX admin_events_at ON admin_events (at);
