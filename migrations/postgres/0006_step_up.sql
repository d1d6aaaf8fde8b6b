-- Step-up: a second-factor proof made on a signed-in session, which changing the account's factors needs (besides a
-- recent sign-in). Its time is kept on the session; a code texted for it has a purpose of its own.

ALTER TABLE sessions ADD COLUMN stepped_up_at BIGINT;

ALTER TABLE sms_codes DROP CONSTRAINT sms_codes_purpose_check;
ALTER TABLE sms_codes ADD CONSTRAINT sms_codes_purpose_check CHECK (purpose IN ('login', 'enroll', 'step_up'));
