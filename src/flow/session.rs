//! Signing in with a password, what a session token is worth, and signing out.

use std::sync::Arc;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::machine::{State, Step};
use super::{limits, Flow, FlowError, FlowResult, Method, Username};
use crate::audit::{Event, Outcome, Requester};
use crate::crypto::password::Password;
use crate::crypto::{flow_id, SessionToken};
use crate::store::{NewSession, Session, SessionId, SessionState, UserId};

/// What a correct password leads to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The account has no second factor: signed in.
    Authenticated(SessionToken),
    /// A pending session was opened; one of `methods` must follow.
    SecondFactorRequired { token: SessionToken, methods: Vec<Method> },
}

/// Something the user should know at sign-in: failures and refused replays since their last sign-in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notice {
    pub kind: &'static str,
    pub count: i64,
    pub last_at: Option<String>,
    pub message: String,
}

/// A sign-in waiting for its second step, as the page for that step shows it.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub username: String,
    /// The methods the account can finish with, in the order [`Method::available_to`] gives.
    pub methods: Vec<Method>,
}

/// A valid full session, as the account's owner may see it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub username: String,
    pub flow_id: String,
    pub authenticated_at: OffsetDateTime,
    /// The earlier of the absolute expiry and the idle expiry.
    pub expires_at: OffsetDateTime,
    pub second_factor: Option<String>,
    pub notices: Vec<Notice>,
}

pub(super) fn rfc3339(unix: i64) -> String {
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
    pub async fn login(&self, username: &str, password: &str, who: &Requester) -> FlowResult<LoginOutcome> {
        // Syntax only: no account can have such a name or password, so saying so reveals nothing about accounts.
        let username = Username::parse(username)
            .ok_or_else(|| FlowError::BadRequest("no account can have this username".into()))?;
        let password = Password::new(password)
            .ok_or_else(|| FlowError::BadRequest("the password must be 1 to 1024 characters".into()))?;
        let now = self.now_unix();
        let flow = flow_id();
        let throttle = limits::password_throttle_keys(username.as_str(), who.client_addr.as_deref());
        if let Err(throttled) = self.store.reserve_password_attempt(&throttle, now).await? {
            Self::step(State::SignedOut, Step::PasswordRefused)?;
            self.audit(Event::Login, Outcome::Throttled, who, None, Some(&flow), None)
                .await?;
            return Err(FlowError::TooManyAttempts {
                retry_after: throttled.retry_after,
                message: "too many sign-in attempts; wait before trying again".into(),
            });
        }
        let user = self.store.user_by_name(username.as_str()).await?;
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let valid = self.hasher.verify(password, stored_hash).await?;
        let user = match user {
            Some(user) if valid => user,
            other => {
                // The account is named when it exists (the trail is for operators, not for the client); a name
                // that matches no account is not written, as people sometimes type their password into that field.
                let subject = other.as_ref().map(|user| (user.id, user.username.as_str()));
                Self::step(State::SignedOut, Step::PasswordRefused)?;
                self.audit(
                    Event::Login,
                    Outcome::InvalidCredentials,
                    who,
                    subject,
                    Some(&flow),
                    None,
                )
                .await?;
                return Err(FlowError::InvalidCredentials);
            }
        };
        let methods = Method::available_to(&user);
        let token = SessionToken::generate();
        let step = if methods.is_empty() {
            Step::PasswordAccepted
        } else {
            Step::SecondFactorRequired
        };
        let (state, expires_at, outcome) = match Self::step(State::SignedOut, step)? {
            State::Pending => (
                SessionState::Pending,
                now + limits::PENDING_SESSION_SECONDS,
                Outcome::SecondFactorRequired,
            ),
            _ => (
                SessionState::Full,
                now + self.settings.session_lifetime_seconds,
                Outcome::Success,
            ),
        };
        let session = NewSession {
            token_digest: token.digest(),
            user_id: user.id,
            state,
            flow_id: flow.clone(),
            now,
            expires_at,
            second_factor: None,
            client_addr: who.client_addr.clone(),
            user_agent: who.user_agent.clone(),
        };
        // The right password's attempt is given back, and the session opened and audited, all at once.
        let opened = self.audit_event(
            Event::Login,
            outcome,
            who,
            Some((user.id, &user.username)),
            Some(&flow),
            None,
        );
        self.store
            .open_session(&throttle, &session, &opened, &*self.seal(&opened))
            .await?;
        self.audited(&opened);
        Ok(match state {
            SessionState::Full => LoginOutcome::Authenticated(token),
            SessionState::Pending => LoginOutcome::SecondFactorRequired { token, methods },
        })
    }

    /// The pending session behind `token`, if it is one and still alive.
    pub(super) async fn pending_session(&self, token: Option<&SessionToken>) -> FlowResult<Option<Session>> {
        let Some(token) = token else { return Ok(None) };
        let now = self.now_unix();
        Ok(self
            .store
            .session_by_digest(&token.digest())
            .await?
            .filter(|s| s.state.0 == SessionState::Pending && s.expires_at > now))
    }

    /// The sign-in behind `token` if it is pending (password checked, second factor outstanding) and alive. The pages
    /// use this to send a pending session to the second step and nowhere else.
    pub async fn pending_login(&self, token: Option<&SessionToken>) -> FlowResult<Option<PendingLogin>> {
        let Some(session) = self.pending_session(token).await? else {
            return Ok(None);
        };
        let Some(user) = self.store.user_by_id(session.user_id).await? else {
            return Ok(None);
        };
        Ok(Some(PendingLogin {
            username: session.username,
            methods: Method::available_to(&user),
        }))
    }

    /// The full session behind `token`; pending, expired and unknown tokens are all just "not signed in".
    pub async fn session(&self, token: Option<&SessionToken>) -> FlowResult<SessionView> {
        let token = token.ok_or(FlowError::Unauthenticated)?;
        let digest = token.digest();
        let at = self.now();
        let now = at.unix_timestamp();
        let idle = self.settings.session_idle_seconds;
        let session = match self.sessions.get(&digest, at) {
            Some(session) => Some(session),
            None => {
                let read = self.store.session_by_digest(&digest).await?.map(Arc::new);
                if let Some(session) = &read {
                    self.sessions.put(digest.clone(), session.clone(), at);
                }
                read
            }
        };
        let session = session
            .filter(|s| s.state.0 == SessionState::Full && s.expires_at > now && s.last_seen_at + idle > now)
            .ok_or(FlowError::Unauthenticated)?;
        let seen = if now - session.last_seen_at >= limits::TOUCH_INTERVAL_SECONDS {
            self.store.touch_session(session.id, now).await?;
            self.sessions.touched(&digest, now);
            now
        } else {
            session.last_seen_at
        };
        let at = |unix: i64| OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(SessionView {
            session_id: session.id,
            user_id: session.user_id,
            username: session.username.clone(),
            flow_id: session.flow_id.clone(),
            authenticated_at: at(session.authenticated_at.unwrap_or(session.created_at)),
            expires_at: at(session.expires_at.min(seen + idle)),
            second_factor: session.second_factor.clone(),
            notices: notices(&session),
        })
    }

    /// Whether this session's sign-in is recent enough to set up, confirm or remove a factor, or to regenerate
    /// recovery codes.
    pub fn may_change_factors(&self, view: &SessionView) -> bool {
        self.now_unix() - view.authenticated_at.unix_timestamp() < limits::REAUTHENTICATION_SECONDS
    }

    /// A full session whose sign-in is recent enough to change factors.
    pub(super) async fn recent_session(&self, token: Option<&SessionToken>) -> FlowResult<SessionView> {
        let view = self.session(token).await?;
        if !self.may_change_factors(&view) {
            return Err(FlowError::ReauthenticationRequired);
        }
        Ok(view)
    }

    /// Ends whatever session `token` names (pending or full). Always succeeds: logging out twice is harmless.
    pub async fn logout(&self, token: Option<&SessionToken>, who: &Requester) -> FlowResult<()> {
        let Some(token) = token else { return Ok(()) };
        let digest = token.digest();
        self.sessions.forget(&digest);
        if let Some(session) = self.store.delete_session(&digest).await? {
            let from = match session.state.0 {
                SessionState::Pending => State::Pending,
                SessionState::Full => State::SignedIn,
            };
            Self::step(from, Step::SignOut)?;
            self.audit(
                Event::Logout,
                Outcome::Success,
                who,
                Some((session.user_id, &session.username)),
                Some(&session.flow_id),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Ends the account's sessions but `keep` (the one that just changed a factor), here and in the database.
    pub(super) async fn end_other_sessions(&self, user: UserId, keep: SessionId) -> FlowResult<()> {
        self.store.delete_user_sessions(user, Some(keep)).await?;
        self.sessions.forget_user(user, Some(keep));
        Ok(())
    }

    /// Deletes expired sessions; the server runs this periodically.
    pub async fn purge_expired_sessions(&self) -> FlowResult<u64> {
        Ok(self
            .store
            .purge_expired_sessions(self.now_unix(), self.settings.session_idle_seconds)
            .await?)
    }
}
