-- Regain reference server, initial schema (SQLite).
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY,
    material BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE recovery_sessions (
    id TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE taps (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    secret_mac TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    one_time INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX taps_user ON taps (user_id);
CREATE TABLE single_use (
    kind TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, digest)
);
CREATE TABLE rate_limits (
    key TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    user_id TEXT,
    reason TEXT NOT NULL,
    helpdesk_ref TEXT
);
CREATE INDEX audit_user_kind ON audit_events (user_id, kind, at);
CREATE INDEX audit_helpdesk ON audit_events (helpdesk_ref);
