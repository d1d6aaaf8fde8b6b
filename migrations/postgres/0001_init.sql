-- Twofold's schema on PostgreSQL, column for column the one in migrations/sqlite so that the store's SQL runs
-- unchanged on both: BIGINT for every integer (the store binds i64), BYTEA for blobs. Times are unix seconds (audit
-- events: milliseconds). Secrets are sealed (AEAD) or digested; nothing here is usable by whoever holds only a copy
-- of the database.

CREATE TABLE users (
    id                         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username                   TEXT   NOT NULL UNIQUE,
    password_hash              TEXT   NOT NULL,
    created_at                 BIGINT NOT NULL,
    -- The active authenticator-app secret (sealed) and the last TOTP step accepted from it (anti-replay).
    totp_secret                BYTEA,
    totp_enrolled_at           BIGINT,
    totp_last_step             BIGINT,
    -- A secret set up but not yet confirmed with a code.
    totp_pending_secret        BYTEA,
    totp_pending_at            BIGINT,
    -- Consecutive second-factor failures across all logins, and the lock they caused.
    second_factor_failures     BIGINT NOT NULL DEFAULT 0,
    second_factor_locked_until BIGINT,
    -- What to tell the user at their next sign-in.
    notice_failures            BIGINT NOT NULL DEFAULT 0,
    notice_replays             BIGINT NOT NULL DEFAULT 0,
    notice_last_at             BIGINT,
    last_login_at              BIGINT
);

CREATE TABLE recovery_codes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    UNIQUE (user_id, digest)
);

CREATE TABLE sessions (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_digest     BYTEA  NOT NULL UNIQUE,
    user_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state            TEXT   NOT NULL CHECK (state IN ('pending', 'full')),
    flow_id          TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    last_seen_at     BIGINT NOT NULL,
    authenticated_at BIGINT,
    second_factor    TEXT,
    failed_attempts  BIGINT NOT NULL DEFAULT 0,
    client_addr      TEXT,
    user_agent       TEXT,
    notice_failures  BIGINT NOT NULL DEFAULT 0,
    notice_replays   BIGINT NOT NULL DEFAULT 0,
    notice_last_at   BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Password attempts per account and per client address, in fixed windows.
CREATE TABLE login_throttle (
    key          TEXT   PRIMARY KEY,
    attempts     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);

CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    flow_id     TEXT,
    user_id     BIGINT,
    username    TEXT,
    client_addr TEXT,
    user_agent  TEXT,
    event       TEXT   NOT NULL,
    method      TEXT,
    outcome     TEXT   NOT NULL
);
CREATE INDEX audit_events_user ON audit_events (username, at_ms);
CREATE INDEX audit_events_flow ON audit_events (flow_id);
