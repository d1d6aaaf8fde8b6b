//! Persistence behind one narrow [`Store`] trait, implemented once in SQL ([`SqlStore`]) and run on SQLite or
//! PostgreSQL. Every rule that must hold across instances (one use per TOTP step, one use per recovery code, attempt
//! counters, locks, throttles, sessions, SMS codes and send limits) is enforced here by a single conditional statement
//! or one transaction that first locks the account (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the user's row), never by
//! reading and then writing from Rust.
//!
//! Finders return `Result<Option<T>>`: a database error is never mistaken for "not found". A database that cannot be
//! reached or does not answer in time is [`StoreError::Unavailable`], which the API answers with 503.

mod direct;
mod postgres;
mod sql;
mod sqlite;
mod statements;

pub use postgres::MIGRATIONS as POSTGRES_MIGRATIONS;
pub use sql::{PoolSettings, SqlStore};
pub use sqlite::MIGRATIONS as SQLITE_MIGRATIONS;

/// The store on an SQLite file.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;
/// The store on a PostgreSQL database shared by any number of instances.
pub type PostgresStore = SqlStore<sqlx::Postgres>;

use std::time::Duration;

use async_trait::async_trait;

pub use crate::ids::{SessionId, UserId};

use crate::audit::chain::{AuditAnchor, AuditRecord, Cut, Head};
use crate::audit::{AuditEvent, AuditFilter};

/// Computes an audit event's MAC from its number and the previous event's MAC.
pub type Seal = dyn Fn(i64, &[u8]) -> Vec<u8> + Send + Sync;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, dropped the connection, or is too busy to answer: a passing condition.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("the username is taken")]
    UsernameTaken,
}

impl StoreError {
    /// True when the failure says nothing about the request and may pass by itself (503, not 500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::TimedOut(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(Box::new(error))
        } else {
            Self::Database(Box::new(error))
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether an error means "the database is not there right now" rather than "this statement is wrong".
fn is_unavailable(error: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match error {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Database(database) => {
            let code = database.code().unwrap_or_default();
            if database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                // 08: connection exceptions; 53: out of connections, memory or disk; 57: the server is shutting down,
                // crashed, still starting, or cancelled a statement at `statement_timeout`; 25006: a read-only standby
                // (e.g. during a failover).
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57") || code == "25006"
            } else if database.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), extended codes included: the write lock was not free within
                // the busy timeout.
                matches!(code.parse::<i32>().map(|code| code & 0xff), Ok(5 | 6))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// An account as stored. Secrets are sealed; `Debug` shows none of them.
#[derive(Clone, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub created_at: i64,
    pub totp_secret: Option<Vec<u8>>,
    pub totp_pending_secret: Option<Vec<u8>>,
    pub totp_last_step: Option<i64>,
    pub sms_phone: Option<Vec<u8>>,
    pub sms_pending_phone: Option<Vec<u8>>,
    pub second_factor_failures: i64,
    pub second_factor_locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub recovery_codes_left: i64,
    /// When an operator disabled the account; `None` while it may sign in.
    pub disabled_at: Option<i64>,
    /// The TOTP step the enrolment's confirming code used, and a digest of the browser that confirmed it
    /// (`Keys::browser_digest`).
    pub totp_enrolled_step: Option<i64>,
    pub totp_enrolled_by: Option<Vec<u8>>,
    #[sqlx(flatten)]
    pub profile: Profile,
}

/// What apps behind Twofold are told about a user, as stored; checked by the flow before it is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Profile {
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Group names, sorted, joined by commas (empty: none).
    pub groups: String,
}

impl Profile {
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.split(',').filter(|group| !group.is_empty())
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("totp", &self.totp_secret.is_some())
            .field("sms", &self.sms_phone.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Password checked, second factor outstanding.
    Pending,
    Full,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Full => "full",
        }
    }
}

/// A session with its account, read in one query: what a request's login state is made of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    #[sqlx(rename = "session_id")]
    pub id: SessionId,
    pub user_id: UserId,
    #[sqlx(try_from = "String")]
    pub state: StoredState,
    pub flow_id: String,
    #[sqlx(rename = "session_created_at")]
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
    pub authenticated_at: Option<i64>,
    pub second_factor: Option<String>,
    pub failed_attempts: i64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub notice_failures: i64,
    pub notice_replays: i64,
    pub notice_last_at: Option<i64>,
    /// When this session last proved a second factor to change the account's factors (step-up).
    pub stepped_up_at: Option<i64>,
    /// The account as it was when the session was read.
    #[sqlx(flatten)]
    pub user: User,
}

/// The `state` column, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredState(pub SessionState);

impl TryFrom<String> for StoredState {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "pending" => Ok(Self(SessionState::Pending)),
            "full" => Ok(Self(SessionState::Full)),
            other => Err(format!("unknown session state {other:?}")),
        }
    }
}

/// A session to create. `token_digest` is the SHA-256 of the token; the token itself never reaches the store.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_digest: Vec<u8>,
    pub user_id: UserId,
    pub state: SessionState,
    pub flow_id: String,
    pub now: i64,
    pub expires_at: i64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// What a right password opens, decided from the account as it is inside the transaction that opens it (so an
/// authenticator enrolled while the password was being hashed is not skipped): the session and its audit event.
pub struct Opening {
    pub session: NewSession,
    pub audit: AuditEvent,
    pub seal: Box<Seal>,
}

/// Decides the [`Opening`] from the account as the transaction reads it.
pub type PlanOpening<'a> = dyn Fn(&User) -> Opening + Send + Sync + 'a;

/// A session [`Store::open_session`] opened: its id, what the plan made of the account, and the account as read.
pub struct Opened {
    pub id: SessionId,
    pub opening: Opening,
    pub user: User,
}

/// A pending session turned into a full one in place, under a new token.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub token_digest: Vec<u8>,
    pub user_id: UserId,
    pub now: i64,
    pub expires_at: i64,
    pub second_factor: &'static str,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// The account-wide and per-login limits on second-factor attempts.
#[derive(Debug, Clone, Copy)]
pub struct AttemptPolicy {
    /// Wrong codes a pending session may take before it dies.
    pub session_tries: i64,
    /// Every this many consecutive failures lock the account's second factor ...
    pub lock_every: i64,
    /// ... for this many seconds.
    pub lock_seconds: i64,
    /// At this many consecutive failures the lock stays until an operator lifts it.
    pub hard_cap: i64,
}

/// The answer to "may this request check a code?". A granted attempt is already counted as a failure; a success
/// clears the count. Counting first is what stops parallel guesses from all slipping under the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptClaim {
    /// Counted: the account's consecutive failures including this attempt.
    Granted {
        account_failures: i64,
    },
    Refused(Refusal),
}

/// Why an attempt was not granted. Nothing was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account's second factor is locked: its consecutive failures and stored lock time, for
    /// `flow::rules::lock` to say until when.
    Locked { failures: i64, locked_until: Option<i64> },
    /// The pending session is gone, expired or out of tries.
    NoPendingLogin,
}

/// What proves the second factor in [`Store::second_step`].
#[derive(Debug, Clone)]
pub enum Proof {
    /// This TOTP step matched; it is accepted only if it is later than the last accepted step.
    TotpStep(i64),
    /// The keyed digest of a recovery code; accepted only if it is unused.
    RecoveryCode(Vec<u8>),
    /// The keyed digest of an SMS code; accepted only if it was sent to this session and is unexpired.
    SmsCode(Vec<u8>),
}

/// What an SMS code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsPurpose {
    Login,
    Enroll,
    /// A signed-in session proving the phone before a change of factors.
    StepUp,
}

impl SmsPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Enroll => "enroll",
            Self::StepUp => "step_up",
        }
    }
}

/// The per-user limits on SMS sends.
#[derive(Debug, Clone, Copy)]
pub struct SmsSendPolicy {
    pub min_interval_seconds: i64,
    pub per_hour: i64,
}

impl SmsSendPolicy {
    /// How long until the next send is allowed, given the sends of the last hour (how many, the latest and the
    /// oldest); `None` when one is allowed now.
    pub fn wait(&self, count: i64, latest: Option<i64>, oldest: Option<i64>, now: i64) -> Option<i64> {
        let too_soon = latest
            .map(|at| at + self.min_interval_seconds - now)
            .filter(|wait| *wait > 0);
        let too_many = (count >= self.per_hour).then(|| oldest.map_or(3600, |at| at + 3600 - now));
        too_soon.or(too_many).map(|wait| wait.max(1))
    }
}

/// A send counted against the limits before the gateway is called; released if the gateway does not accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSlot(pub i64);

/// An SMS code the gateway accepted, to be stored (replacing the user's older code of the same purpose).
#[derive(Debug, Clone)]
pub struct NewSmsCode {
    pub user_id: UserId,
    pub purpose: SmsPurpose,
    pub session: Option<SessionId>,
    pub digest: Vec<u8>,
    pub now: i64,
    pub expires_at: i64,
    /// For an enrolment: the sealed number being confirmed.
    pub pending_phone: Option<Vec<u8>>,
}

/// Everything the second step of a login needs, owned, so that a backend can hand it over whole (SQLite runs it as
/// one closure on a connection of its own).
pub struct SecondStepRequest {
    /// The pending session whose attempt this is.
    pub pending: SessionId,
    pub policy: AttemptPolicy,
    /// What proves the second factor; `None` when the code was wrong.
    pub proof: Option<Proof>,
    pub upgrade: Upgrade,
    /// The success, appended to the audit chain with the session it reports.
    pub audit: AuditEvent,
    pub seal: Box<Seal>,
}

/// How [`Store::second_step`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondStep {
    /// The attempt was not granted. Nothing changed.
    Refused(Refusal),
    /// The attempt was counted, and the code was wrong or its proof refused (`proof_refused`: the recovery code is
    /// unknown or used, no such SMS code is waiting).
    Failed { account_failures: i64, proof_refused: bool },
    /// The TOTP `step` was already used: a replay, which counts toward no limit, so the attempt's claim was rolled
    /// back with the rest. Nothing changed.
    Replayed { step: i64 },
    /// Signed in.
    Done,
}

/// A password attempt refused by the throttle, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: i64,
}

/// A window of attempts for one throttle key.
#[derive(Debug, Clone)]
pub struct ThrottleKey {
    pub key: String,
    pub limit: i64,
    pub window_seconds: i64,
}

/// What [`Store::change_password`] does.
pub struct PasswordChange<'a> {
    pub user: UserId,
    /// The hash the current password was checked against; `None` when an operator sets the password.
    pub expected_hash: Option<&'a str>,
    pub new_hash: &'a str,
    /// The session that made the change, which stays signed in.
    pub keep: Option<SessionId>,
    pub refund: &'a [ThrottleKey],
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserSummary {
    pub username: String,
    pub created_at: i64,
    pub totp: bool,
    pub sms: bool,
    pub recovery_codes_left: i64,
    pub second_factor_failures: i64,
    pub second_factor_locked_until: Option<i64>,
    pub last_login_at: Option<i64>,
    pub disabled_at: Option<i64>,
    pub groups: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Accounts.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        profile: &Profile,
        now: i64,
    ) -> StoreResult<UserId>;
    /// Replaces the account's profile; false if there is no such account.
    async fn set_profile(&self, id: UserId, profile: &Profile) -> StoreResult<bool>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<UserSummary>>;
    /// Deletes the account with its sessions and codes; false if there was none.
    async fn delete_user(&self, id: UserId) -> StoreResult<bool>;
    /// Removes every second factor and ends every session (an operator's help for a lost phone).
    async fn reset_second_factors(&self, id: UserId) -> StoreResult<()>;
    /// Clears the consecutive-failure count and any lock.
    async fn unlock_second_factor(&self, id: UserId) -> StoreResult<()>;
    /// In one transaction under the account's lock: replaces the password hash (only if it is still `expected`, when
    /// given: a change proven with the current password loses to a change made meanwhile), gives back the attempt
    /// reserved under `refund`, and ends the account's sessions, pending ones included, except `keep`. False when the
    /// hash was no longer `expected` (nothing changed) or the account is gone.
    async fn change_password(&self, change: &PasswordChange<'_>) -> StoreResult<bool>;
    /// Disables the account as of `now` and ends all its sessions, or (`now` = `None`) enables it again; in one
    /// transaction under the account's lock, so a sign-in racing it either finishes first and loses its session here,
    /// or finds the account disabled. False if there is no such account.
    async fn set_disabled(&self, id: UserId, now: Option<i64>) -> StoreResult<bool>;

    // Authenticator app.
    async fn set_pending_totp(&self, id: UserId, sealed_secret: &[u8], now: i64) -> StoreResult<()>;
    /// Makes the pending secret (if it is still `sealed_secret`) the active one with `step` recorded as used (and as
    /// the enrolment's, by the browser `enrolled_by`), resets the failure count, and stores `recovery_codes` (digests)
    /// as the new set when given. False if the pending secret changed meanwhile.
    async fn activate_totp(
        &self,
        id: UserId,
        sealed_secret: &[u8],
        step: i64,
        enrolled_by: &[u8],
        recovery_codes: Option<&[Vec<u8>]>,
        now: i64,
    ) -> StoreResult<bool>;
    /// Records `step` as used (if later than the last one) and removes the authenticator with the recovery codes.
    /// False when the step was already used.
    async fn remove_totp(&self, id: UserId, step: i64) -> StoreResult<bool>;

    // SMS.
    /// Counts a send if the user is within the limits, and against the `shared` keys (the destination number's and
    /// the hourly budget of all texts) if they are within theirs, all or nothing; else when to try again. All
    /// instances share every limit.
    async fn reserve_sms_send(
        &self,
        id: UserId,
        policy: &SmsSendPolicy,
        shared: &[ThrottleKey],
        now: i64,
    ) -> StoreResult<Result<SendSlot, Throttled>>;
    /// How long until the limits allow another send to the user (`None`: now), without counting one.
    async fn sms_send_wait(&self, id: UserId, policy: &SmsSendPolicy, now: i64) -> StoreResult<Option<i64>>;
    /// Whether an unexpired code of this purpose is waiting for the user; for a login code, one sent to `session`.
    async fn sms_code_waiting(
        &self,
        id: UserId,
        purpose: SmsPurpose,
        session: Option<SessionId>,
        now: i64,
    ) -> StoreResult<bool>;
    /// Un-counts a send the gateway did not accept, under the user and the `shared` keys it was counted under.
    async fn release_sms_send(&self, slot: SendSlot, shared: &[ThrottleKey]) -> StoreResult<()>;
    async fn store_sms_code(&self, code: &NewSmsCode) -> StoreResult<()>;
    /// Consumes the enrolment code with this digest (if unexpired) and makes the pending phone the active one,
    /// storing `recovery_codes` as the new set when given. False if no such code.
    async fn activate_sms(
        &self,
        id: UserId,
        digest: &[u8],
        recovery_codes: Option<&[Vec<u8>]>,
        now: i64,
    ) -> StoreResult<bool>;

    /// Consumes the step-up code with this digest texted to `session` (if unexpired) and removes the phone, with the
    /// recovery codes when no authenticator is left. False if no such code (nothing changed).
    async fn remove_sms(&self, id: UserId, session: SessionId, digest: &[u8], now: i64) -> StoreResult<bool>;

    /// Consumes `proof` (a TOTP step later than the last one, an unused recovery code, or the step-up code texted
    /// to `session`) and records the session's step-up at `now`, resetting the account's failure count. False when
    /// the proof was already used or never valid.
    async fn step_up(&self, session: SessionId, user: UserId, proof: &Proof, now: i64) -> StoreResult<bool>;

    // Recovery codes.
    async fn replace_recovery_codes(&self, id: UserId, digests: &[Vec<u8>], now: i64) -> StoreResult<()>;

    // Second-factor attempts.
    async fn claim_second_factor_attempt(
        &self,
        id: UserId,
        pending: Option<SessionId>,
        policy: &AttemptPolicy,
        now: i64,
    ) -> StoreResult<AttemptClaim>;
    /// Notes a failed (or replayed) code for the next sign-in's notices, and ends the pending session once it has
    /// used all its tries. Returns the tries the pending session has used (0 without one, or when it is gone).
    async fn record_second_factor_failure(
        &self,
        id: UserId,
        pending: Option<SessionId>,
        replay: bool,
        policy: &AttemptPolicy,
        now: i64,
    ) -> StoreResult<i64>;
    /// The second step of a login, in one transaction under the account's lock: claims an attempt for the pending
    /// session (as [`Store::claim_second_factor_attempt`] does); then, with a proof (`None`: the code was wrong),
    /// consumes it, turns the pending session into a full one in place (a new token), resets the failure count and
    /// appends the success to the audit chain. A refused claim changes nothing; a wrong code or
    /// refused proof leaves the attempt counted; a success is all of it or nothing.
    async fn second_step(&self, step: SecondStepRequest) -> StoreResult<SecondStep>;
    /// Notes a refused replay for the next sign-in's notices (a replay counts toward no limit).
    async fn note_replay(&self, id: UserId, now: i64) -> StoreResult<()>;

    // Sessions.
    /// After a right password, in one transaction under the account's lock: gives back the attempt reserved under
    /// `refund` (it was no failure), reads the account, and creates the session `plan` decides from it (a full one
    /// takes over the account's pending notices and records the sign-in), appending the plan's audit event to the
    /// chain. `None` if the account is gone.
    async fn open_session(
        &self,
        refund: &[ThrottleKey],
        user: UserId,
        plan: &PlanOpening<'_>,
    ) -> StoreResult<Option<Opened>>;
    /// The session with this token digest and its account, in one query.
    async fn session_by_digest(&self, digest: &[u8]) -> StoreResult<Option<Session>>;
    async fn touch_session(&self, id: SessionId, now: i64) -> StoreResult<()>;
    async fn delete_session(&self, digest: &[u8]) -> StoreResult<Option<Session>>;
    /// Ends the account's sessions except `keep`; returns how many ended.
    async fn delete_user_sessions(&self, id: UserId, keep: Option<SessionId>) -> StoreResult<u64>;
    /// Deletes sessions past their absolute or idle expiry.
    async fn purge_expired_sessions(&self, now: i64, idle_seconds: i64) -> StoreResult<u64>;

    // Password throttling.
    /// Counts one attempt against every key, all or none: if any key is over its limit nothing is counted.
    async fn reserve_password_attempt(&self, keys: &[ThrottleKey], now: i64) -> StoreResult<Result<(), Throttled>>;

    /// Lists sessions (all, or one account's), newest first.
    async fn list_sessions(&self, user: Option<UserId>) -> StoreResult<Vec<Session>>;
    /// Ends the session with this id, if it is `owner`'s (any account's with `None`).
    async fn delete_session_by_id(&self, id: SessionId, owner: Option<UserId>) -> StoreResult<Option<Session>>;
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;

    // Audit.
    /// Appends an event to the chain. `seal` is given the event's number (one after the newest event's, or the
    /// pruning anchor's when the table is empty) and the previous event's MAC (nothing for the very first event),
    /// and returns this event's; the store serialises appends so every event follows exactly one other.
    async fn record_audit(&self, event: &AuditEvent, seal: &Seal) -> StoreResult<()>;
    /// Events matching `filter`, in chain order.
    async fn audit_events(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;
    /// Up to `limit` events of the chain numbered after `after_seq`, in number order: the chain a page at a time.
    async fn audit_page(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;
    async fn audit_anchor(&self) -> StoreResult<Option<AuditAnchor>>;
    /// The newest event's number and MAC (the anchor's last when every event was pruned).
    async fn audit_head(&self) -> StoreResult<Option<Head>>;
    /// Deletes the events up to the cut's and records the anchor (the cut, with `anchor_mac`) so the rest still
    /// verifies; nothing when the cut's event is no longer there as it was. Returns how many were deleted.
    async fn prune_audit(&self, cut: &Cut, anchor_mac: &[u8]) -> StoreResult<u64>;
}
