//! A request's standing with Twofold, read once from its session cookie into a typed value ([`LoginState`]), and
//! the types of its states. What a state can do is what its type offers: the flow's functions take the state they
//! need (a [`PendingLogin`], a [`FullSession`], a [`RecentSession`]) and those that change state consume it, so an
//! illegal step (finishing a sign-in twice, verifying a code from a full session) cannot be written. Each change of
//! state is also checked against the machine's table ([`super::machine::transition`]), which the diagrams are drawn
//! from, so the picture and the code cannot drift apart.
//!
//! **What may a pending session do?** Exactly three things, the three functions that take a [`PendingLogin`]:
//! `Flow::verify_second_factor` (which consumes it: a full session, or back to pending with a try used, or signed
//! out after the last try), `Flow::send_login_sms`, and `Flow::logout`. Everything else sees a pending session as
//! not signed in: the HTTP layer's extractors answer `401 unauthenticated` (or send a browser back to the second
//! step), because no other function accepts it. It lives [`rules::PENDING_SESSION_SECONDS`] and
//! [`rules::SECOND_FACTOR`]`.session_tries` wrong codes ([`rules::pending_alive`]).

use std::sync::Arc;

use time::OffsetDateTime;

use super::machine::{self, StateKind, Step};
use super::{rules, Flow, FlowError, FlowResult, Method};
use crate::audit::{Event, Outcome, Requester};
use crate::crypto::SessionToken;
use crate::store::{Session, SessionId, SessionState, User, UserId};

/// Where a request stands, read once from its cookie.
#[derive(Debug)]
pub enum LoginState {
    /// No session, an unknown or expired one.
    SignedOut,
    Pending(PendingLogin),
    SignedIn(FullSession),
}

/// The state of a request without a live session. A type only so that the transitions out of it can be named.
#[derive(Debug, Clone, Copy)]
pub struct SignedOut;

impl StateKind for SignedOut {
    const STATE: machine::State = machine::State::SignedOut;
}

/// A sign-in whose password was right and whose second factor is outstanding, read with its account in one query.
#[derive(Debug)]
pub struct PendingLogin {
    /// Boxed: a session with its account is large, and a login state is moved around by value.
    session: Box<Session>,
    digest: Vec<u8>,
}

impl StateKind for PendingLogin {
    const STATE: machine::State = machine::State::Pending;
}

impl PendingLogin {
    pub fn username(&self) -> &str {
        &self.session.user.username
    }

    /// The methods the account can finish with, in the order [`Method::available_to`] gives.
    pub fn methods(&self) -> Vec<Method> {
        Method::available_to(&self.session.user)
    }

    pub(super) fn id(&self) -> SessionId {
        self.session.id
    }

    pub(super) fn user(&self) -> &User {
        &self.session.user
    }

    pub(super) fn flow_id(&self) -> &str {
        &self.session.flow_id
    }

    pub(super) fn digest(&self) -> &[u8] {
        &self.digest
    }
}

/// A signed-in session, alive (its absolute and idle expiry checked, its idle timer written when due).
#[derive(Debug, Clone)]
pub struct FullSession {
    session: Arc<Session>,
    digest: Vec<u8>,
    /// The earlier of the absolute and the idle expiry, as of this request.
    expires_at: i64,
}

impl StateKind for FullSession {
    const STATE: machine::State = machine::State::SignedIn;
}

impl FullSession {
    pub fn username(&self) -> &str {
        &self.session.user.username
    }

    pub fn authenticated_at(&self) -> OffsetDateTime {
        unix_time(self.session.authenticated_at.unwrap_or(self.session.created_at))
    }

    pub fn expires_at(&self) -> OffsetDateTime {
        unix_time(self.expires_at)
    }

    /// The second factor this sign-in used (`totp`, `sms`, `recovery_code`), or none.
    pub fn second_factor(&self) -> Option<&str> {
        self.session.second_factor.as_deref()
    }

    /// What the person should know about what happened since their last sign-in.
    pub fn notices(&self) -> Vec<Notice> {
        notices(&self.session)
    }

    pub(super) fn id(&self) -> SessionId {
        self.session.id
    }

    pub(super) fn user_id(&self) -> UserId {
        self.session.user_id
    }

    pub(super) fn flow_id(&self) -> &str {
        &self.session.flow_id
    }

    pub(super) fn digest(&self) -> &[u8] {
        &self.digest
    }

    fn sign_in_time(&self) -> i64 {
        self.session.authenticated_at.unwrap_or(self.session.created_at)
    }
}

/// A full session whose sign-in is recent enough ([`rules::recent_sign_in`]) to set up, replace or remove a factor.
#[derive(Debug, Clone)]
pub struct RecentSession(FullSession);

impl std::ops::Deref for RecentSession {
    type Target = FullSession;
    fn deref(&self) -> &FullSession {
        &self.0
    }
}

/// A recent session allowed to change the account's factors: the account has none yet, or this session proved one
/// within the last [`rules::STEP_UP_SECONDS`] (`Flow::step_up`). Carries the account as read for the decision.
#[derive(Debug)]
pub struct FactorChange {
    session: RecentSession,
    account: User,
}

impl std::ops::Deref for FactorChange {
    type Target = RecentSession;
    fn deref(&self) -> &RecentSession {
        &self.session
    }
}

impl FactorChange {
    pub(super) fn account(&self) -> &User {
        &self.account
    }
}

/// What a request wanted to do with a pending sign-in, for [`Flow::without_pending`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingAction {
    Verify,
    SendSms,
}

/// Something the user should know at sign-in: failures and refused replays since their last sign-in.
/// `ToSchema`: `GET /auth/session` carries these as they are.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct Notice {
    /// `second_factor_failures` or `totp_replay_refused`.
    pub kind: &'static str,
    pub count: i64,
    pub last_at: Option<String>,
    pub message: String,
}

pub(super) fn unix_time(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(super) fn rfc3339(unix: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn notices(session: &Session) -> Vec<Notice> {
    let last_at = session.notice_last_at.map(rfc3339);
    let mut notices = Vec::new();
    if session.notice_failures > 0 {
        let n = session.notice_failures;
        notices.push(Notice {
            kind: "second_factor_failures",
            count: n,
            last_at: last_at.clone(),
            message: format!(
                "{n} wrong second-factor code{} entered since your last sign-in. If that was not you, someone may know your password: change it.",
                if n == 1 { " was" } else { "s were" }
            ),
        });
    }
    if session.notice_replays > 0 {
        let n = session.notice_replays;
        notices.push(Notice {
            kind: "totp_replay_refused",
            count: n,
            last_at,
            message: format!(
                "An authenticator code that had already been used was tried again {n} time{} and refused. Someone may have seen your password and a code: change your password.",
                if n == 1 { "" } else { "s" }
            ),
        });
    }
    notices
}

impl Flow {
    /// Where the request holding `token` stands: one read of its session and account (a full session usually from
    /// this instance's short memory of them), the expiry rules applied, and a full session's idle timer written
    /// when it is due.
    #[tracing::instrument(level = "debug", name = "flow.resolve", skip_all)]
    pub async fn resolve(&self, token: Option<&SessionToken>) -> FlowResult<LoginState> {
        let Some(token) = token else {
            return Ok(LoginState::SignedOut);
        };
        let digest = token.digest();
        let at = self.now();
        let now = at.unix_timestamp();
        if let Some(session) = self.sessions.get(&digest, at) {
            return self.full(session, digest, now).await;
        }
        let Some(session) = self.store.session_by_digest(&digest).await? else {
            return Ok(LoginState::SignedOut);
        };
        match session.state.0 {
            SessionState::Pending => {
                if rules::pending_alive(session.expires_at, session.failed_attempts, now) {
                    Ok(LoginState::Pending(PendingLogin {
                        session: Box::new(session),
                        digest,
                    }))
                } else {
                    machine::transition::<PendingLogin, SignedOut>(Step::Expiry)?;
                    Ok(LoginState::SignedOut)
                }
            }
            SessionState::Full => {
                let session = Arc::new(session);
                self.sessions.put(digest.clone(), session.clone(), at);
                self.full(session, digest, now).await
            }
        }
    }

    /// A full session read from the database or the cache, if it is still alive.
    async fn full(&self, session: Arc<Session>, digest: Vec<u8>, now: i64) -> FlowResult<LoginState> {
        let idle = self.settings.session_idle_seconds;
        if !rules::full_alive(session.expires_at, session.last_seen_at, now, idle) {
            machine::transition::<FullSession, SignedOut>(Step::Expiry)?;
            return Ok(LoginState::SignedOut);
        }
        let seen = if rules::touch_due(session.last_seen_at, now, idle) {
            self.store.touch_session(session.id, now).await?;
            self.sessions.touched(&digest, now);
            now
        } else {
            session.last_seen_at
        };
        let expires_at = rules::full_expires_at(session.expires_at, seen, idle);
        Ok(LoginState::SignedIn(FullSession {
            session,
            digest,
            expires_at,
        }))
    }

    /// Audits a request that needed a pending sign-in and had none (expired, finished, or never started), and
    /// returns the answer to it.
    #[tracing::instrument(level = "debug", name = "flow.without_pending", skip_all)]
    pub async fn without_pending(&self, action: PendingAction, who: &Requester) -> FlowResult<FlowError> {
        let (event, method) = match action {
            PendingAction::Verify => (Event::SecondFactor, None),
            PendingAction::SendSms => (Event::SmsSend, Some(Method::Sms)),
        };
        self.audit(event, Outcome::NoPendingLogin, who, None, None, method)
            .await?;
        Ok(FlowError::NoPendingLogin)
    }

    /// The recent session as one allowed to change factors, or `StepUpRequired`. Reads the session and its account
    /// afresh (a step-up made through another instance a moment ago counts; a factor added meanwhile too).
    pub async fn factor_change(&self, session: RecentSession) -> FlowResult<FactorChange> {
        let fresh = self
            .store
            .session_by_digest(session.digest())
            .await?
            .ok_or(FlowError::Unauthenticated)?;
        let allowed = Method::available_to(&fresh.user).is_empty() || self.has_stepped_up(&fresh);
        if !allowed {
            return Err(FlowError::StepUpRequired);
        }
        Ok(FactorChange {
            session,
            account: fresh.user,
        })
    }

    fn has_stepped_up(&self, session: &Session) -> bool {
        rules::stepped_up(session.stepped_up_at, self.now_unix())
    }

    /// Whether this session may change factors without a step-up first (the account has none, or it stepped up a
    /// moment ago), for the security page to offer the right forms.
    pub fn may_change_without_step_up(&self, session: &FullSession) -> bool {
        Method::available_to(&session.session.user).is_empty() || self.has_stepped_up(&session.session)
    }

    /// Whether this session's sign-in is recent enough to change factors.
    pub fn is_recent(&self, session: &FullSession) -> bool {
        rules::recent_sign_in(session.sign_in_time(), self.now_unix())
    }

    /// The session as one recent enough to change factors, or `ReauthenticationRequired`.
    pub fn recent(&self, session: FullSession) -> FlowResult<RecentSession> {
        if self.is_recent(&session) {
            Ok(RecentSession(session))
        } else {
            Err(FlowError::ReauthenticationRequired)
        }
    }
}
