-- Regain reference server, initial schema (PostgreSQL).
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY,
    material BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE recovery_sessions (
    id TEXT PRIMARY KEY,
    state BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE taps (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    secret_mac TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    one_time BIGINT NOT NULL,
    uses BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX taps_user ON taps (user_id);
CREATE TABLE single_use (
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, digest)
);
CREATE TABLE rate_limits (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE TABLE audit_events (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    user_id TEXT,
    reason TEXT NOT NULL,
    helpdesk_ref TEXT
);
CREATE INDEX audit_user_kind ON audit_events (user_id, kind, at);
CREATE INDEX audit_helpdesk ON audit_events (helpdesk_ref);
