-- Twofold's schema. Times are unix seconds (audit events: milliseconds). Secrets are sealed (AEAD) or digested;
-- nothing here is usable by whoever holds only a copy of the database.

CREATE TABLE users (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    username                   TEXT    NOT NULL UNIQUE,
    password_hash              TEXT    NOT NULL,
    created_at                 INTEGER NOT NULL,
    -- The active authenticator-app secret (sealed) and the last TOTP step accepted from it (anti-replay).
    totp_secret                BLOB,
    totp_enrolled_at           INTEGER,
    totp_last_step             INTEGER,
    -- A secret set up but not yet confirmed with a code.
    totp_pending_secret        BLOB,
    totp_pending_at            INTEGER,
    -- Consecutive second-factor failures across all logins, and the lock they caused.
    second_factor_failures     INTEGER NOT NULL DEFAULT 0,
    second_factor_locked_until INTEGER,
    -- What to tell the user at their next sign-in.
    notice_failures            INTEGER NOT NULL DEFAULT 0,
    notice_replays             INTEGER NOT NULL DEFAULT 0,
    notice_last_at             INTEGER,
    last_login_at              INTEGER
);

CREATE TABLE recovery_codes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    UNIQUE (user_id, digest)
);

CREATE TABLE sessions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    token_digest     BLOB    NOT NULL UNIQUE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'full')),
    flow_id          TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    authenticated_at INTEGER,
    second_factor    TEXT,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    client_addr      TEXT,
    user_agent       TEXT,
    notice_failures  INTEGER NOT NULL DEFAULT 0,
    notice_replays   INTEGER NOT NULL DEFAULT 0,
    notice_last_at   INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Password attempts per account and per client address, in fixed windows.
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    attempts     INTEGER NOT NULL,
    window_start INTEGER NOT NULL
);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    flow_id     TEXT,
    user_id     INTEGER,
    username    TEXT,
    client_addr TEXT,
    user_agent  TEXT,
    event       TEXT    NOT NULL,
    method      TEXT,
    outcome     TEXT    NOT NULL
);
CREATE INDEX audit_events_user ON audit_events (username, at_ms);
CREATE INDEX audit_events_flow ON audit_events (flow_id);
