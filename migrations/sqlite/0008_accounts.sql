-- An operator can disable an account (`twofold user disable`): it keeps its password and factors but cannot sign in,
-- and answers a sign-in as a wrong password does. NULL: enabled; else when it was disabled.

ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- The TOTP step the enrolment's confirming code used, and which browser confirmed it (a digest of its address and
-- user agent): that code typed again at once by that browser, to sign in, is the person's own and is not reported to
-- them as someone else's replay.
ALTER TABLE users ADD COLUMN totp_enrolled_step INTEGER;
ALTER TABLE users ADD COLUMN totp_enrolled_by BLOB;
