-- The OpenID Provider: users and their sign-in methods, authorization codes, tokens and
-- browser sessions (SQLite).
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    given_name TEXT,
    family_name TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    last_sign_in INTEGER,
    country TEXT,
    privileged INTEGER NOT NULL DEFAULT 0,
    groups_json TEXT NOT NULL DEFAULT '[]',
    attributes_json TEXT NOT NULL DEFAULT '{}',
    password_hash TEXT,
    totp_secret BLOB,
    totp_last_step INTEGER,
    must_register INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX users_name ON users (given_name, family_name);
CREATE TABLE auth_codes (
    digest TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    user_id TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    amr TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE access_tokens (
    digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE browser_sessions (
    digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    amr TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
