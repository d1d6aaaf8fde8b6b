-- SMS as a second factor: the phone (sealed), the codes sent (digested), and the sends that count toward limits.

ALTER TABLE users ADD COLUMN sms_phone BLOB;
ALTER TABLE users ADD COLUMN sms_enrolled_at INTEGER;
ALTER TABLE users ADD COLUMN sms_pending_phone BLOB;

-- At most one live code per user and purpose: a newer code replaces the older one.
CREATE TABLE sms_codes (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL CHECK (purpose IN ('login', 'enroll')),
    -- For a login code, the pending session it was sent to; it is good for that sign-in only.
    session_id INTEGER,
    digest     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, purpose)
);

-- Sends the gateway accepted (or that are in flight), for the per-user limits.
CREATE TABLE sms_sends (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sent_at INTEGER NOT NULL
);
CREATE INDEX sms_sends_user ON sms_sends (user_id, sent_at);
