-- Step-up: a second-factor proof made on a signed-in session, which changing the account's factors needs (besides a
-- recent sign-in). Its time is kept on the session; a code texted for it has a purpose of its own.

ALTER TABLE sessions ADD COLUMN stepped_up_at INTEGER;

-- SQLite cannot change a CHECK constraint in place: the table is rebuilt with 'step_up' allowed.
CREATE TABLE sms_codes_new (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL CHECK (purpose IN ('login', 'enroll', 'step_up')),
    -- For a login or step-up code, the session it was sent to; it is good for that session only.
    session_id INTEGER,
    digest     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, purpose)
);
INSERT INTO sms_codes_new SELECT user_id, purpose, session_id, digest, created_at, expires_at FROM sms_codes;
DROP TABLE sms_codes;
ALTER TABLE sms_codes_new RENAME TO sms_codes;
