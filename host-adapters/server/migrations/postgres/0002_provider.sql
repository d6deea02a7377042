-- The OpenID Provider: users and their sign-in methods, authorization codes, tokens and
-- browser sessions (PostgreSQL).
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    given_name TEXT,
    family_name TEXT,
    enabled BIGINT NOT NULL DEFAULT 1,
    last_sign_in BIGINT,
    country TEXT,
    privileged BIGINT NOT NULL DEFAULT 0,
    groups_json TEXT NOT NULL DEFAULT '[]',
    attributes_json TEXT NOT NULL DEFAULT '{}',
    password_hash TEXT,
    totp_secret BYTEA,
    totp_last_step BIGINT,
    must_register BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX users_name ON users (given_name, family_name);
CREATE TABLE auth_codes (
    digest TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    user_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE access_tokens (
    digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE browser_sessions (
    digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
