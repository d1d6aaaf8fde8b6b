//! Every rule that bounds a login, in one place: the numbers, and the pure decisions made from them (is this session
//! alive, is this account's second factor locked, how many tries has this sign-in left, is this sign-in recent
//! enough to change a factor). Everything that decides one of these calls this module: the flow, the session cache,
//! the operator's commands. Where SQL must repeat a decision so that it holds under concurrency (the store's claim of
//! an attempt, its purge of expired sessions), the store is tested against these functions on both databases
//! (`tests/it/rules.rs`). The README's security section quotes these numbers.
//!
//! **When does an account lock?** Every second-factor failure (a wrong code, a replayed code, a wrong recovery
//! code, from any sign-in or while changing a factor) counts against the account, and only a success resets the
//! count. Every [`SECOND_FACTOR`]`.lock_every` (10) consecutive failures lock the second factor for
//! `lock_seconds` (15 minutes): [`lock_engaged_by`]. At `hard_cap` (100) it stays locked until an operator runs
//! `twofold user unlock`: [`lock`]. While locked, no code is checked at all.

use crate::store::{AttemptPolicy, SmsSendPolicy, ThrottleKey};

/// How long a pending session (password checked, second factor outstanding) lives.
pub const PENDING_SESSION_SECONDS: i64 = 5 * 60;

/// Changing a factor needs a sign-in at most this old.
pub const REAUTHENTICATION_SECONDS: i64 = 15 * 60;

/// When the account has a second factor, changing its factors also needs a second-factor proof made on the same
/// session within this long (a step-up; the sign-in's own second step does not count).
pub const STEP_UP_SECONDS: i64 = 5 * 60;

/// A full session's idle timer is written at most once per this many seconds, so session checks are reads; with
/// short idle timeouts, more often (see [`touch_due`]).
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

/// Recovery codes come in sets of this many.
pub use crate::otp::RECOVERY_CODES_PER_SET;

/// Texts to one phone number, whichever accounts ask for them (so several accounts cannot bomb one number): at most
/// 2 a minute, 5 an hour and 10 a day. All texts together are bounded by the configured hourly budget
/// (`[sms] budget_per_hour`), against toll fraud (SMS pumping).
pub const SMS_PER_NUMBER: [(i64, i64); 3] = [(60, 2), (60 * 60, 5), (24 * 60 * 60, 10)];

/// The budget of texts an hour when the configuration names none.
pub const SMS_BUDGET_PER_HOUR: i64 = 500;

/// The limits shared by all accounts on one text: its number's (`destination`, a keyed digest of the number, never
/// the number) and the hourly budget. In a fixed order, as the store's throttle wants.
pub fn sms_throttle_keys(destination: &str, budget_per_hour: i64) -> Vec<ThrottleKey> {
    let mut keys: Vec<ThrottleKey> = SMS_PER_NUMBER
        .iter()
        .map(|&(window_seconds, limit)| ThrottleKey {
            key: format!("sms-to:{destination}:{window_seconds}"),
            limit,
            window_seconds,
        })
        .collect();
    keys.push(ThrottleKey {
        key: "sms-budget:3600".into(),
        limit: budget_per_hour,
        window_seconds: 60 * 60,
    });
    keys
}

/// Registrations from one client address: 10 in each 15-minute window. Each costs a password hash, and a refused one
/// says whether a username is taken, so they are throttled like password attempts (but never given back).
pub const REGISTRATION_WINDOW_SECONDS: i64 = 15 * 60;
pub const REGISTRATIONS_PER_ADDRESS: i64 = 10;

pub fn registration_throttle_keys(client_addr: Option<&str>) -> Vec<ThrottleKey> {
    client_addr
        .map(|addr| ThrottleKey {
            key: format!("register:{addr}"),
            limit: REGISTRATIONS_PER_ADDRESS,
            window_seconds: REGISTRATION_WINDOW_SECONDS,
        })
        .into_iter()
        .collect()
}

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

/// Whether a pending session can still take a code: it has not expired and has tries left. (The store's claim of an
/// attempt repeats this in SQL.)
pub fn pending_alive(expires_at: i64, tries_used: i64, now: i64) -> bool {
    expires_at > now && tries_used < SECOND_FACTOR.session_tries
}

/// The tries a pending session has left after using `tries_used`.
pub fn tries_left(tries_used: i64) -> i64 {
    (SECOND_FACTOR.session_tries - tries_used).max(0)
}

/// Whether a full session is alive: before its absolute expiry and seen within the idle timeout. (The store's purge
/// of expired sessions repeats this in SQL.)
pub fn full_alive(expires_at: i64, last_seen_at: i64, now: i64, idle_seconds: i64) -> bool {
    expires_at > now && last_seen_at + idle_seconds > now
}

/// When a full session ends if it is not used again: the earlier of its absolute and its idle expiry.
pub fn full_expires_at(expires_at: i64, last_seen_at: i64, idle_seconds: i64) -> i64 {
    expires_at.min(last_seen_at + idle_seconds)
}

/// Whether this request should write the session's last-seen time (it was written long enough ago). The written time
/// lags the last use by up to the interval, so the interval is at most a quarter of the idle timeout: a session used
/// more often than its idle timeout then never ends idle, however short the timeout (at under 4 s, every use writes).
pub fn touch_due(last_seen_at: i64, now: i64, idle_seconds: i64) -> bool {
    now - last_seen_at >= TOUCH_INTERVAL_SECONDS.min(idle_seconds / 4)
}

/// Whether a sign-in at `authenticated_at` is recent enough to set up, replace or remove a factor.
pub fn recent_sign_in(authenticated_at: i64, now: i64) -> bool {
    now - authenticated_at < REAUTHENTICATION_SECONDS
}

/// Whether a session that stepped up at `stepped_up_at` may change the account's factors at `now`.
pub fn stepped_up(stepped_up_at: Option<i64>, now: i64) -> bool {
    stepped_up_at.is_some_and(|at| at <= now && now - at < STEP_UP_SECONDS)
}

/// The state of an account's second-factor lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Open,
    Until(i64),
    UntilUnlocked,
}

impl Lock {
    /// What `Retry-After` says for a lock (nothing for an open one).
    pub fn retry_after(self, now: i64) -> Option<i64> {
        match self {
            Self::Open => None,
            Self::Until(until) => Some((until - now).max(1)),
            Self::UntilUnlocked => Some(OPERATOR_LOCK_RETRY_AFTER),
        }
    }
}

/// The lock an account's consecutive failures and stored lock time amount to at `now`. (The store's claim of an
/// attempt repeats this in SQL.)
pub fn lock(consecutive_failures: i64, locked_until: Option<i64>, now: i64) -> Lock {
    match locked_until {
        _ if consecutive_failures >= SECOND_FACTOR.hard_cap => Lock::UntilUnlocked,
        Some(until) if until > now => Lock::Until(until),
        _ => Lock::Open,
    }
}

/// Whether the failure that brought the account to `consecutive_failures` engaged a lock. (The store's claim sets
/// the lock time in the same statement that counts the failure.)
pub fn lock_engaged_by(consecutive_failures: i64) -> bool {
    consecutive_failures > 0 && consecutive_failures % SECOND_FACTOR.lock_every == 0
}

/// Until when the failure that brought the account to `consecutive_failures` at `now` locks it, if it does.
pub fn locked_until_after(consecutive_failures: i64, now: i64) -> Option<i64> {
    lock_engaged_by(consecutive_failures).then_some(now + SECOND_FACTOR.lock_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_pending_session_lives_five_minutes_and_five_tries() {
        assert!(pending_alive(NOW + 1, 0, NOW));
        assert!(pending_alive(NOW + 1, 4, NOW));
        assert!(!pending_alive(NOW + 1, 5, NOW), "five tries used");
        assert!(!pending_alive(NOW, 0, NOW), "expired at this second");
        assert_eq!(tries_left(0), 5);
        assert_eq!(tries_left(4), 1);
        assert_eq!(tries_left(5), 0);
        assert_eq!(tries_left(9), 0);
    }

    #[test]
    fn a_full_session_ends_at_its_absolute_or_idle_expiry() {
        let idle = 30 * 60;
        assert!(full_alive(NOW + 100, NOW, NOW + 99, idle));
        assert!(!full_alive(NOW + 100, NOW, NOW + 100, idle), "absolute expiry");
        assert!(full_alive(NOW + 10_000, NOW, NOW + idle - 1, idle));
        assert!(!full_alive(NOW + 10_000, NOW, NOW + idle, idle), "idle");
        assert_eq!(full_expires_at(NOW + 100, NOW, idle), NOW + 100);
        assert_eq!(full_expires_at(NOW + 10_000, NOW, idle), NOW + idle);
    }

    #[test]
    fn the_idle_timer_is_written_once_a_minute_or_four_times_per_idle_timeout() {
        let half_hour = 30 * 60;
        assert!(!touch_due(NOW, NOW + 59, half_hour));
        assert!(touch_due(NOW, NOW + 60, half_hour));
        assert!(!touch_due(NOW, NOW + 14, 60));
        assert!(touch_due(NOW, NOW + 15, 60));
        assert!(touch_due(NOW, NOW, 3), "every use writes under 4 s");
    }

    #[test]
    fn a_session_used_more_often_than_its_idle_timeout_stays_alive() {
        for idle in [1, 3, 10, 60, 90, 30 * 60, 24 * 3600] {
            for gap in [1, idle / 2, idle - 1]
                .into_iter()
                .filter(|gap| (1..idle).contains(gap))
            {
                let mut seen = NOW;
                let mut now = NOW;
                while now < NOW + 3 * idle + 200 {
                    now += gap;
                    assert!(
                        full_alive(i64::MAX, seen, now, idle),
                        "idle {idle}, gap {gap}, at {}",
                        now - NOW
                    );
                    if touch_due(seen, now, idle) {
                        seen = now;
                    }
                }
            }
        }
    }

    #[test]
    fn a_sign_in_is_recent_for_fifteen_minutes() {
        assert!(recent_sign_in(NOW, NOW));
        assert!(recent_sign_in(NOW, NOW + 15 * 60 - 1));
        assert!(!recent_sign_in(NOW, NOW + 15 * 60));
    }

    #[test]
    fn a_step_up_lasts_five_minutes() {
        assert!(!stepped_up(None, NOW));
        assert!(stepped_up(Some(NOW), NOW));
        assert!(stepped_up(Some(NOW), NOW + 5 * 60 - 1));
        assert!(!stepped_up(Some(NOW), NOW + 5 * 60));
        assert!(
            !stepped_up(Some(NOW + 10), NOW),
            "a clock that went back trusts nothing"
        );
    }

    #[test]
    fn every_tenth_failure_locks_and_the_hundredth_waits_for_an_operator() {
        assert_eq!(lock(0, None, NOW), Lock::Open);
        assert_eq!(lock(9, None, NOW), Lock::Open);
        assert_eq!(lock(10, Some(NOW + 1), NOW), Lock::Until(NOW + 1));
        assert_eq!(lock(10, Some(NOW), NOW), Lock::Open, "a lock ends at its time");
        assert_eq!(lock(100, None, NOW), Lock::UntilUnlocked);
        assert_eq!(lock(100, Some(NOW - 5), NOW), Lock::UntilUnlocked);
        assert!(!lock_engaged_by(0));
        assert!(!lock_engaged_by(9));
        assert!(lock_engaged_by(10));
        assert!(lock_engaged_by(20));
        assert!(lock_engaged_by(100));
        assert_eq!(locked_until_after(10, NOW), Some(NOW + 15 * 60));
        assert_eq!(locked_until_after(11, NOW), None);
        assert_eq!(Lock::Until(NOW + 30).retry_after(NOW), Some(30));
        assert_eq!(Lock::Until(NOW).retry_after(NOW), Some(1));
        assert_eq!(Lock::UntilUnlocked.retry_after(NOW), Some(OPERATOR_LOCK_RETRY_AFTER));
        assert_eq!(Lock::Open.retry_after(NOW), None);
    }
}
