-- Notifications waiting to be sent to a user's other channels (PostgreSQL).
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
