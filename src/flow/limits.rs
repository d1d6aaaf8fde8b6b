//! Every number that bounds a login, in one place. The README's security section quotes these.

use crate::store::{AttemptPolicy, SmsSendPolicy, ThrottleKey};

/// How long a pending session (password checked, second factor outstanding) lives.
pub const PENDING_SESSION_SECONDS: i64 = 5 * 60;

/// Changing a factor needs a sign-in at most this old.
pub const REAUTHENTICATION_SECONDS: i64 = 15 * 60;

/// A full session's idle timer is written at most once per this many seconds, so session checks are reads; the idle
/// timeout is therefore exact to within this much.
pub const TOUCH_INTERVAL_SECONDS: i64 = 60;

/// 5 wrong codes end a pending session; every 10 consecutive failures lock the account's second factor for 15
/// minutes; 100 lock it until an operator runs `twofold user unlock` (NIST SP 800-63B's cap).
pub const SECOND_FACTOR: AttemptPolicy = AttemptPolicy {
    session_tries: 5,
    lock_every: 10,
    lock_seconds: 15 * 60,
    hard_cap: 100,
};

/// SMS codes live 5 minutes; each user gets at most one send per 30 seconds and 5 per hour, enrolment sends
/// included. A send the gateway did not accept counts toward neither limit.
pub const SMS_CODE_SECONDS: i64 = 5 * 60;
pub const SMS_SENDS: SmsSendPolicy = SmsSendPolicy {
    min_interval_seconds: 30,
    per_hour: 5,
};

/// What `Retry-After` says while the second factor waits for an operator.
pub const OPERATOR_LOCK_RETRY_AFTER: i64 = 24 * 60 * 60;

/// Password attempts: 10 per account and 100 per client address in each 15-minute window. An attempt is counted
/// before the hash is checked and given back when the password was right, so parallel guesses cannot overrun it.
pub const PASSWORD_WINDOW_SECONDS: i64 = 15 * 60;
pub const PASSWORD_ATTEMPTS_PER_ACCOUNT: i64 = 10;
pub const PASSWORD_ATTEMPTS_PER_ADDRESS: i64 = 100;

pub fn password_throttle_keys(username: &str, client_addr: Option<&str>) -> Vec<ThrottleKey> {
    let mut keys = vec![ThrottleKey {
        key: format!("account:{username}"),
        limit: PASSWORD_ATTEMPTS_PER_ACCOUNT,
        window_seconds: PASSWORD_WINDOW_SECONDS,
    }];
    if let Some(addr) = client_addr {
        keys.push(ThrottleKey {
            key: format!("address:{addr}"),
            limit: PASSWORD_ATTEMPTS_PER_ADDRESS,
            window_seconds: PASSWORD_WINDOW_SECONDS,
        });
    }
    keys
}
