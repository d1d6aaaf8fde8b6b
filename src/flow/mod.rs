//! The login state machine and every rule around it: who may do what in which session state, attempt limits,
//! expiry, anti-replay, re-authentication, notices and audit events. No HTTP and no SQL live here: requests arrive
//! as plain values from `http` (or the command line), state changes go through the [`Store`] trait, and time comes
//! from the injected [`Clock`].
//!
//! A request's session is read once into a typed [`LoginState`] (`state.rs`: what each state may do); the rules
//! that bound a login are pure functions in `rules.rs`; the transitions are checked against the machine's table
//! (`machine.rs`), from which the diagrams are drawn (`diagram.rs`).
//!
//! A new way of signing in (a security key, a passkey, an OpenID Connect authorization) plugs in as a function that
//! takes the state it starts from and returns the state it leads to, with its step in the table.

mod account;
mod cache;
pub mod diagram;
pub mod machine;
mod operator;
pub mod rules;
mod second_factor;
mod session;
mod sms;
mod state;
#[cfg(test)]
mod transitions;

pub use crate::audit::chain::{AuditRecord, Head, Verdict};
pub use crate::audit::{AuditFilter, Requester};
pub use crate::crypto::SessionToken;
pub use account::{ProfileChange, SignedInSession, UserOverview};
pub use machine::{IllegalStep, State, Step};
pub use operator::{Pruned, UserDetails};
pub use rules::Lock;
pub use second_factor::{recovery_codes_in, NotVerified, SecondFactorStatus, TotpSetup};
pub use session::LoginOutcome;
pub use sms::{SmsChallenge, SmsSent};
pub use state::{FactorChange, FullSession, LoginState, Notice, PendingAction, PendingLogin, RecentSession};

use std::sync::Arc;

use time::OffsetDateTime;

use crate::audit::{AuditEvent, Event, Outcome};
use crate::clock::Clock;
use crate::crypto::password::{HashError, PasswordHasher, WeakPassword};
use crate::crypto::{flow_id as flow_id_new, Keys};
use crate::metrics::Metrics;
use crate::sms::Sender;
use crate::store::{Seal, Store, StoreError, User, UserId};

/// Settings the flow needs from the configuration.
#[derive(Debug, Clone)]
pub struct FlowSettings {
    pub issuer: String,
    pub allow_registration: bool,
    pub session_lifetime_seconds: i64,
    pub session_idle_seconds: i64,
    /// Audit events older than this are pruned.
    pub audit_retention_seconds: i64,
    /// How long a full session read from the database answers session checks (zero: not at all).
    pub session_cache: std::time::Duration,
    /// Texts an hour, all accounts together.
    pub sms_budget_per_hour: i64,
}

/// Everything that can go wrong, in the product's words. The HTTP layer maps each to a status and error code.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{0}")]
    BadRequest(String),
    #[error("registration is disabled on this server")]
    RegistrationDisabled,
    #[error("this username is taken")]
    UsernameTaken,
    #[error("{0}")]
    WeakPassword(WeakPassword),
    #[error(
        "a username is 1 to 64 characters: letters a-z, digits, '.', '_', '-' or '@', starting with a letter or digit"
    )]
    InvalidUsername,
    #[error("the username or password is wrong")]
    InvalidCredentials,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("{message}")]
    TooManyAttempts { retry_after: i64, message: String },
    #[error("{0}")]
    InvalidCode(String),
    #[error("there is no sign-in waiting for a second factor; sign in with your password first")]
    NoPendingLogin,
    #[error("you are not signed in")]
    Unauthenticated,
    #[error(
        "changing a second factor needs a recent sign-in: sign out and sign in again, then retry within 15 minutes"
    )]
    ReauthenticationRequired,
    #[error(
        "changing a second factor needs a current code from one of your factors first: confirm it's you \
         (POST /auth/step-up), then retry within 5 minutes"
    )]
    StepUpRequired,
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("a stored secret could not be opened with this server's key (was secret_key_file replaced?)")]
    SecretUnreadable,
    #[error("a phone number is written in international form: + and the country code, e.g. +15551234567")]
    InvalidPhone,
    #[error("{0}")]
    SmsUnavailable(String),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error("no such session: {0}")]
    NoSuchSession(i64),
    #[error(transparent)]
    IllegalStep(#[from] IllegalStep),
}

pub type FlowResult<T> = Result<T, FlowError>;

/// A username: 1 to 64 characters of `a-z 0-9 . _ - @`, starting with a letter or digit, compared case-insensitively
/// (stored lower-case). No colon, so it is safe in a TOTP key URI label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.is_empty() || raw.len() > 64 {
            return None;
        }
        let lower = raw.to_ascii_lowercase();
        let mut chars = lower.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        (first_ok && rest_ok).then_some(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A second-factor method, as named in the HTTP contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Totp,
    Sms,
    RecoveryCode,
}

impl Method {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "totp" => Some(Self::Totp),
            "sms" => Some(Self::Sms),
            "recovery_code" => Some(Self::RecoveryCode),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Sms => "sms",
            Self::RecoveryCode => "recovery_code",
        }
    }

    /// The methods this account can sign in with now, computed from its enrolled factors (never from a stored flag).
    pub fn available_to(user: &User) -> Vec<Method> {
        let mut methods = Vec::new();
        if user.totp_secret.is_some() {
            methods.push(Self::Totp);
        }
        if user.sms_phone.is_some() {
            methods.push(Self::Sms);
        }
        if !methods.is_empty() && user.recovery_codes_left > 0 {
            methods.push(Self::RecoveryCode);
        }
        methods
    }
}

/// The login state machine with its collaborators.
pub struct Flow {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: Arc<Keys>,
    hasher: PasswordHasher,
    /// `None` when no SMS gateway is configured: SMS is then not offered.
    sms: Option<Sender>,
    metrics: Arc<Metrics>,
    settings: FlowSettings,
    sessions: cache::SessionCache,
}

impl Flow {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        keys: Arc<Keys>,
        hasher: PasswordHasher,
        sms: Option<Sender>,
        metrics: Arc<Metrics>,
        settings: FlowSettings,
    ) -> Self {
        Self {
            store,
            clock,
            keys,
            hasher,
            sms,
            metrics,
            sessions: cache::SessionCache::new(settings.session_cache),
            settings,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics, for what outlives a request (the connection counters).
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Whether people may create their own accounts (`allow_registration`).
    pub fn allows_registration(&self) -> bool {
        self.settings.allow_registration
    }

    /// Now, by the clock the flow was given (the command line asks it too, so tests can set the time).
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn now_unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Writes one audit event. An event that cannot be written fails the request: an authentication server that
    /// cannot account for what it does should not do it silently.
    async fn audit(
        &self,
        event: Event,
        outcome: Outcome,
        who: &Requester,
        user: Option<(UserId, &str)>,
        flow_id: Option<&str>,
        method: Option<Method>,
    ) -> FlowResult<()> {
        let record = self.audit_event(event, outcome, who, user, flow_id, method);
        self.store.record_audit(&record, &*self.seal(&record)).await?;
        self.audited(&record);
        Ok(())
    }

    /// An audit event of this moment, not yet written.
    fn audit_event(
        &self,
        event: Event,
        outcome: Outcome,
        who: &Requester,
        user: Option<(UserId, &str)>,
        flow_id: Option<&str>,
        method: Option<Method>,
    ) -> AuditEvent {
        AuditEvent {
            at: self.now(),
            flow_id: Some(flow_id.map_or_else(flow_id_new, str::to_owned)),
            user_id: user.map(|(id, _)| id),
            username: user.map(|(_, name)| name.to_owned()),
            requester: who.clone(),
            event,
            method: method.map(Method::as_str),
            outcome,
        }
    }

    /// What links `record` into the audit chain: its MAC, given its number and the previous event's MAC.
    fn seal(&self, record: &AuditEvent) -> Box<Seal> {
        let keys = self.keys.clone();
        let record = record.clone();
        Box::new(move |seq: i64, prev: &[u8]| crate::audit::chain::event_mac(&keys, seq, prev, &record.content()))
    }

    /// Logs and counts an event the database has recorded.
    fn audited(&self, record: &AuditEvent) {
        tracing::info!(
            event = record.event.as_str(),
            outcome = record.outcome.as_str(),
            user = record.username.as_deref().unwrap_or("-"),
            method = record.method.unwrap_or("-"),
            client = record.requester.client_addr.as_deref().unwrap_or("-"),
            flow = record.flow_id.as_deref().unwrap_or("-"),
            "audit"
        );
        self.metrics.observe(record);
    }

    /// The anti-forgery token for the forms of a browser bound to `binding` (its session token, or before sign-in a
    /// random value in a cookie): an HMAC under a subkey of the server key.
    pub fn form_token(&self, binding: &str) -> String {
        self.keys.form_token(binding)
    }

    /// Whether `token` is [`Flow::form_token`] of `binding`, compared in constant time.
    pub fn form_token_valid(&self, binding: &str, token: &str) -> bool {
        self.keys.form_token_valid(binding, token)
    }

    /// A fresh random value for a browser's anti-forgery binding before it signs in.
    pub fn browser_secret() -> String {
        crate::crypto::browser_secret()
    }

    /// What the database stores for a set of recovery codes: their keyed digests.
    fn recovery_code_digests(&self, codes: &[crate::otp::RecoveryCode]) -> Vec<Vec<u8>> {
        codes
            .iter()
            .map(|code| self.keys.recovery_code_digest(code.as_str()))
            .collect()
    }

    fn totp_context(user: UserId) -> String {
        format!("totp:{}", user.0)
    }

    fn phone_context(user: UserId) -> String {
        format!("phone:{}", user.0)
    }

    fn open_totp_secret(&self, user: UserId, sealed: &[u8]) -> FlowResult<Vec<u8>> {
        self.keys
            .open(&Self::totp_context(user), sealed)
            .ok_or(FlowError::SecretUnreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        assert!(Username::parse("bob.smith@example.com").is_some());
        for bad in ["", "-bob", "a b", "a:b", "ünïcode", "名前", "tab\t"] {
            assert!(Username::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Username::parse(&"a".repeat(64)).is_some());
        assert!(Username::parse(&"a".repeat(65)).is_none());
        assert!(Username::parse(&"a".repeat(1000)).is_none());
    }
}
