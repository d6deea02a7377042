-- Passkeys (WebAuthn credentials) and the challenges of ceremonies in progress (PostgreSQL).
CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    sign_count BIGINT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);
CREATE TABLE webauthn_challenges (
    digest TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    challenge BYTEA NOT NULL,
    user_id TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_challenges_expiry ON webauthn_challenges (expires_at);
