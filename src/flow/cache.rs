//! A short-lived memory of full sessions, so that the session check every request of the apps behind Twofold makes
//! usually skips the database.
//!
//! An entry is used for at most `session_cache` (1 s by default) after it was read from the database; expiry and idle
//! time are still checked against the session's own times on every use. This instance forgets a session at once when
//! it ends it (logout, a factor change ending the other sessions, an operator's revocation through this instance). A
//! session ended elsewhere (another instance, or the `twofold` command on the same database) stops working here within
//! that time: it is the bound on revocation lag. Pending sessions are never kept: their tries and their existence are
//! what the second step's limits are made of.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use time::{Duration, OffsetDateTime};

use crate::store::{Session, SessionId, SessionState, UserId};

/// At most this many entries; a full cache first drops the stale ones, then takes no more until some go stale. At
/// 1 s freshness that is 10,000 distinct sessions checked per second before checks fall through to the database, and
/// a few MiB of memory.
const CAPACITY: usize = 10_000;

struct Entry {
    session: Arc<Session>,
    read_at: OffsetDateTime,
}

pub struct SessionCache {
    /// Keyed by the token's digest, as the database is.
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
    /// How long an entry may stand in for the database: the longest a revocation made elsewhere goes unnoticed here.
    fresh_for: Duration,
}

impl SessionCache {
    /// A cache whose entries stand in for the database for `fresh_for` (zero: never).
    pub fn new(fresh_for: std::time::Duration) -> Self {
        Self {
            entries: Mutex::default(),
            fresh_for: Duration::try_from(fresh_for).unwrap_or(Duration::ZERO),
        }
    }

    fn fresh(&self, entry: &Entry, now: OffsetDateTime) -> bool {
        now >= entry.read_at && now - entry.read_at < self.fresh_for
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        // A poisoned lock means a panic elsewhere mid-update; the map is still a valid map of whole entries.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The full session with this token digest, if it was read from the database recently enough.
    pub fn get(&self, digest: &[u8], now: OffsetDateTime) -> Option<Arc<Session>> {
        let entries = self.entries();
        let entry = entries.get(digest)?;
        self.fresh(entry, now).then(|| entry.session.clone())
    }

    /// Remembers a full session just read from the database (pending ones are not kept).
    pub fn put(&self, digest: Vec<u8>, session: Arc<Session>, now: OffsetDateTime) {
        if session.state.0 != SessionState::Full || self.fresh_for <= Duration::ZERO {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.retain(|_, entry| self.fresh(entry, now));
            if entries.len() >= CAPACITY {
                return;
            }
        }
        entries.insert(digest, Entry { session, read_at: now });
    }

    /// Records that the session was seen at `last_seen_at` (as just written to the database).
    pub fn touched(&self, digest: &[u8], last_seen_at: i64) {
        if let Some(entry) = self.entries().get_mut(digest) {
            let mut session = (*entry.session).clone();
            session.last_seen_at = last_seen_at;
            entry.session = Arc::new(session);
        }
    }

    /// Forgets the session with this token digest (it was ended here).
    pub fn forget(&self, digest: &[u8]) {
        self.entries().remove(digest);
    }

    /// Forgets the session with this id.
    pub fn forget_session(&self, id: SessionId) {
        self.entries().retain(|_, entry| entry.session.id != id);
    }

    /// Forgets the account's sessions except `keep`.
    pub fn forget_user(&self, user: UserId, keep: Option<SessionId>) {
        self.entries()
            .retain(|_, entry| entry.session.user_id != user || Some(entry.session.id) == keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Profile, StoredState, User};

    const T0: i64 = 1_800_000_000;

    fn at(seconds: i64, millis: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap() + Duration::milliseconds(millis)
    }

    fn session(id: i64, user: i64, state: SessionState) -> Arc<Session> {
        Arc::new(Session {
            id: SessionId(id),
            user_id: UserId(user),
            user: User {
                id: UserId(user),
                username: format!("user{user}"),
                password_hash: String::new(),
                created_at: T0,
                totp_secret: None,
                totp_pending_secret: None,
                totp_last_step: None,
                sms_phone: None,
                sms_pending_phone: None,
                second_factor_failures: 0,
                second_factor_locked_until: None,
                last_login_at: None,
                recovery_codes_left: 0,
                disabled_at: None,
                totp_enrolled_step: None,
                totp_enrolled_by: None,
                profile: Profile::default(),
            },
            state: StoredState(state),
            flow_id: "flow".into(),
            created_at: T0,
            expires_at: T0 + 3600,
            last_seen_at: T0,
            authenticated_at: Some(T0),
            second_factor: Some("totp".into()),
            failed_attempts: 0,
            client_addr: None,
            user_agent: None,
            notice_failures: 0,
            notice_replays: 0,
            notice_last_at: None,
            stepped_up_at: None,
        })
    }

    #[test]
    fn entries_stand_in_for_one_second_only() {
        let cache = SessionCache::new(std::time::Duration::from_secs(1));
        cache.put(b"a".to_vec(), session(1, 1, SessionState::Full), at(T0, 0));
        assert!(cache.get(b"a", at(T0, 999)).is_some());
        assert!(cache.get(b"a", at(T0 + 1, 0)).is_none());
        assert!(
            cache.get(b"a", at(T0 - 1, 0)).is_none(),
            "a clock that went back trusts nothing"
        );
        assert!(cache.get(b"b", at(T0, 0)).is_none());
    }

    #[test]
    fn zero_keeps_nothing() {
        let cache = SessionCache::new(std::time::Duration::ZERO);
        cache.put(b"a".to_vec(), session(1, 1, SessionState::Full), at(T0, 0));
        assert!(cache.get(b"a", at(T0, 0)).is_none());
        assert!(cache.entries().is_empty());
    }

    #[test]
    fn pending_sessions_are_never_kept() {
        let cache = SessionCache::new(std::time::Duration::from_secs(1));
        cache.put(b"p".to_vec(), session(1, 1, SessionState::Pending), at(T0, 0));
        assert!(cache.get(b"p", at(T0, 0)).is_none());
    }

    #[test]
    fn ending_sessions_here_forgets_them_at_once() {
        let cache = SessionCache::new(std::time::Duration::from_secs(1));
        let now = at(T0, 0);
        cache.put(b"a".to_vec(), session(1, 1, SessionState::Full), now);
        cache.put(b"b".to_vec(), session(2, 1, SessionState::Full), now);
        cache.put(b"c".to_vec(), session(3, 1, SessionState::Full), now);
        cache.put(b"d".to_vec(), session(4, 2, SessionState::Full), now);
        cache.forget(b"a");
        assert!(cache.get(b"a", now).is_none());
        cache.forget_user(UserId(1), Some(SessionId(3)));
        assert!(cache.get(b"b", now).is_none());
        assert!(cache.get(b"c", now).is_some(), "the session that made the change stays");
        cache.forget_session(SessionId(4));
        assert!(cache.get(b"d", now).is_none());
    }

    #[test]
    fn touches_update_the_entry() {
        let cache = SessionCache::new(std::time::Duration::from_secs(1));
        cache.put(b"a".to_vec(), session(1, 1, SessionState::Full), at(T0, 0));
        cache.touched(b"a", T0 + 70);
        assert_eq!(cache.get(b"a", at(T0, 500)).unwrap().last_seen_at, T0 + 70);
    }

    #[test]
    fn a_full_cache_makes_room_from_stale_entries_only() {
        let cache = SessionCache::new(std::time::Duration::from_secs(1));
        for n in 0..CAPACITY {
            cache.put(
                n.to_be_bytes().to_vec(),
                session(n as i64, 1, SessionState::Full),
                at(T0, 0),
            );
        }
        cache.put(b"late".to_vec(), session(-1, 1, SessionState::Full), at(T0, 500));
        assert!(
            cache.get(b"late", at(T0, 600)).is_none(),
            "no room while all entries are fresh"
        );
        cache.put(b"later".to_vec(), session(-2, 1, SessionState::Full), at(T0 + 1, 0));
        assert!(cache.get(b"later", at(T0 + 1, 100)).is_some());
        assert_eq!(cache.entries().len(), 1);
    }
}
