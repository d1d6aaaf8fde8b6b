-- SMS as a second factor: the phone (sealed), the codes sent (digested), and the sends that count toward limits.

ALTER TABLE users ADD COLUMN sms_phone BYTEA;
ALTER TABLE users ADD COLUMN sms_enrolled_at BIGINT;
ALTER TABLE users ADD COLUMN sms_pending_phone BYTEA;

-- At most one live code per user and purpose: a newer code replaces the older one.
CREATE TABLE sms_codes (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT   NOT NULL CHECK (purpose IN ('login', 'enroll')),
    -- For a login code, the pending session it was sent to; it is good for that sign-in only.
    session_id BIGINT,
    digest     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, purpose)
);

-- Sends the gateway accepted (or that are in flight), for the per-user limits.
CREATE TABLE sms_sends (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sent_at BIGINT NOT NULL
);
CREATE INDEX sms_sends_user ON sms_sends (user_id, sent_at);
