-- An operator can disable an account (`twofold user disable`): it keeps its password and factors but cannot sign in,
-- and answers a sign-in as a wrong password does. NULL: enabled; else when it was disabled.

ALTER TABLE users ADD COLUMN disabled_at BIGINT;
