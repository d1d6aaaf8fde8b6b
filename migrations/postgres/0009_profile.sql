-- What apps behind Twofold are told about a user (forward-auth's Remote-Email, Remote-Name and Remote-Groups; OpenID
-- Connect's claims): an email address, a display name and groups, set by the operator (`twofold user add/edit`).
-- Groups are kept as one comma-separated, sorted list of names ([a-z0-9_-]{1,64}), read with the account in the
-- same query as every session check, so a request never joins another table for them.

ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '';
