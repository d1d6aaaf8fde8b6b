//! The SQL of the statements that both the sqlx implementation (on either database) and SQLite's direct path
//! (`direct.rs`) run, written once so the two cannot drift apart. Parameters are `$N`, which both databases (and
//! rusqlite, by name) read the same way.

/// Counts a try against a pending session that is alive (`flow::rules::pending_alive`): $1 session, $2 now, $3 the
/// tries a pending session has.
pub const CLAIM_SESSION: &str = "UPDATE sessions SET failed_attempts = failed_attempts + 1 \
     WHERE id = $1 AND state = 'pending' AND expires_at > $2 AND failed_attempts < $3";

/// Counts a failure against an account whose second factor is open (`flow::rules::lock`), locking it when the count
/// reaches a multiple of the policy's `lock_every` (`flow::rules::locked_until_after`): $1 lock_every, $2 now, $3
/// lock_seconds, $4 user, $5 hard_cap. Returns the count.
pub const CLAIM_ACCOUNT: &str = "UPDATE users SET second_factor_failures = second_factor_failures + 1, \
         second_factor_locked_until = CASE WHEN (second_factor_failures + 1) % $1 = 0 \
             THEN $2 + $3 ELSE second_factor_locked_until END \
     WHERE id = $4 AND second_factor_failures < $5 \
         AND (second_factor_locked_until IS NULL OR second_factor_locked_until <= $2) \
     RETURNING second_factor_failures";

/// Why an account's claim was refused: $1 user.
pub const ACCOUNT_LOCK: &str = "SELECT second_factor_failures, second_factor_locked_until FROM users WHERE id = $1";

/// Records a TOTP step as used, if it is later than the last one: $1 step, $2 user.
pub const CONSUME_TOTP_STEP: &str = "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_secret IS NOT NULL \
     AND (totp_last_step IS NULL OR totp_last_step < $1)";

/// Uses an unused recovery code: $1 now, $2 user, $3 digest.
pub const CONSUME_RECOVERY_CODE: &str =
    "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND digest = $3 AND used_at IS NULL";

/// Uses the login code sent to this pending session, if unexpired: $1 user, $2 session, $3 digest, $4 now.
pub const CONSUME_SMS_CODE: &str =
    "DELETE FROM sms_codes WHERE user_id = $1 AND purpose = 'login' AND session_id = $2 \
     AND digest = $3 AND expires_at > $4";

/// Uses the step-up code sent to this signed-in session, if unexpired: $1 user, $2 session, $3 digest, $4 now.
pub const CONSUME_STEP_UP_SMS_CODE: &str =
    "DELETE FROM sms_codes WHERE user_id = $1 AND purpose = 'step_up' AND session_id = $2 \
     AND digest = $3 AND expires_at > $4";

/// Turns a pending session into a full one in place, under a new token, taking over the account's notices: $1 token
/// digest, $2 expires_at, $3 now, $4 second factor, $5 client address, $6 user agent, $7 user, $8 session.
pub const UPGRADE_SESSION: &str = "UPDATE sessions SET token_digest = $1, state = 'full', expires_at = $2, \
         last_seen_at = $3, authenticated_at = $3, second_factor = $4, client_addr = $5, user_agent = $6, \
         failed_attempts = 0, (notice_failures, notice_replays, notice_last_at) = \
             (SELECT notice_failures, notice_replays, notice_last_at FROM users WHERE id = $7) \
     WHERE id = $8 AND user_id = $7 AND state = 'pending'";

/// A completed sign-in: the notices were handed to the new full session, and the run of failures is over. $1 now,
/// $2 user.
pub const SIGNED_IN: &str = "UPDATE users SET notice_failures = 0, notice_replays = 0, notice_last_at = NULL, \
         last_login_at = $1, second_factor_failures = 0, second_factor_locked_until = NULL \
     WHERE id = $2";

/// The newest event's number and MAC, which the next event's MAC covers.
pub const LAST_AUDIT: &str = "SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1";

/// Where the chain starts after pruning, when no event is left: the last pruned event's number and MAC.
pub const ANCHOR_END: &str = "SELECT last_seq, last_mac FROM audit_anchor WHERE id = 1";

/// Appends an event: $1..$9 its content (`audit::chain::Content`, in order), $10 the previous MAC, $11 its MAC,
/// $12 its number, $13 its MAC's version.
pub const INSERT_AUDIT: &str = "INSERT INTO audit_events (at_ms, flow_id, user_id, username, client_addr, user_agent, \
         event, method, outcome, prev_mac, mac, seq, mac_version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
