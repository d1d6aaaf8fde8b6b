//! Signing in with a password, and signing out.

use super::machine::{self, Step};
use super::state::{FullSession, LoginState, PendingLogin, SignedOut};
use super::{rules, Flow, FlowError, FlowResult, Method, Username};
use crate::audit::{Event, Outcome, Requester};
use crate::crypto::password::Password;
use crate::crypto::{flow_id, SessionToken};
use crate::store::{NewSession, Opening, SessionState, User, UserId};

/// What a right password leads to. The state is decided in the transaction that opens the session, from the
/// account's factors as they are then.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The account has no second factor: signed in.
    Authenticated(SessionToken),
    /// A pending session was opened; one of `methods` must follow.
    SecondFactorRequired { token: SessionToken, methods: Vec<Method> },
}

impl Flow {
    #[tracing::instrument(level = "debug", name = "flow.login", skip_all)]
    pub async fn login(&self, username: &str, password: &str, who: &Requester) -> FlowResult<LoginOutcome> {
        // Syntax only: no account can have such a name or password, so saying so reveals nothing about accounts.
        let username = Username::parse(username)
            .ok_or_else(|| FlowError::BadRequest("no account can have this username".into()))?;
        let password = Password::new(password)
            .ok_or_else(|| FlowError::BadRequest("the password must be 1 to 1024 characters".into()))?;
        let now = self.now_unix();
        let flow = flow_id();
        let throttle = rules::password_throttle_keys(username.as_str(), who.client_addr.as_deref());
        if let Err(throttled) = self.store.reserve_password_attempt(&throttle, now).await? {
            machine::transition::<SignedOut, SignedOut>(Step::PasswordRefused)?;
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
            Some(user) if valid && user.disabled_at.is_none() => user,
            other => {
                // A disabled account's right password is answered as a wrong one; only the trail tells them apart.
                let outcome = if valid {
                    Outcome::Disabled
                } else {
                    Outcome::InvalidCredentials
                };
                let subject = other.as_ref().map(|u| (u.id, u.username.as_str()));
                return Err(self.password_refused(subject, outcome, who, &flow).await?);
            }
        };
        let token = SessionToken::generate();
        let lifetime = self.settings.session_lifetime_seconds;
        // The right password's attempt is given back, and the session opened and audited, all at once; whether it
        // is pending or full is decided from the account as the transaction reads it.
        let plan = |account: &User| {
            let second_factor = !Method::available_to(account).is_empty();
            let (state, expires_at, outcome) = if second_factor {
                (
                    SessionState::Pending,
                    now + rules::PENDING_SESSION_SECONDS,
                    Outcome::SecondFactorRequired,
                )
            } else {
                (SessionState::Full, now + lifetime, Outcome::Success)
            };
            let audit = self.audit_event(
                Event::Login,
                outcome,
                who,
                Some((account.id, &account.username)),
                Some(&flow),
                None,
            );
            Opening {
                seal: self.seal(&audit),
                audit,
                session: NewSession {
                    token_digest: token.digest(),
                    user_id: account.id,
                    state,
                    flow_id: flow.clone(),
                    now,
                    expires_at,
                    client_addr: who.client_addr.clone(),
                    user_agent: who.user_agent.clone(),
                },
            }
        };
        let Some(opened) = self.store.open_session(&throttle, user.id, &plan).await? else {
            // Deleted or disabled while the password was being checked.
            let subject = Some((user.id, user.username.as_str()));
            return Err(self.password_refused(subject, Outcome::Disabled, who, &flow).await?);
        };
        self.audited(&opened.opening.audit);
        Ok(match opened.opening.session.state {
            SessionState::Full => {
                machine::transition::<SignedOut, FullSession>(Step::PasswordAccepted)?;
                LoginOutcome::Authenticated(token)
            }
            SessionState::Pending => {
                machine::transition::<SignedOut, PendingLogin>(Step::SecondFactorRequired)?;
                LoginOutcome::SecondFactorRequired {
                    token,
                    methods: Method::available_to(&opened.user),
                }
            }
        })
    }

    /// Audits a refused password (wrong, an unknown user, or a disabled account's) and returns the answer to it,
    /// the same for all. The account is named when it exists (the trail is for operators, not for the client); a
    /// name that matches no account is not written, as people sometimes type their password into that field.
    async fn password_refused(
        &self,
        subject: Option<(UserId, &str)>,
        outcome: Outcome,
        who: &Requester,
        flow: &str,
    ) -> FlowResult<FlowError> {
        machine::transition::<SignedOut, SignedOut>(Step::PasswordRefused)?;
        self.audit(Event::Login, outcome, who, subject, Some(flow), None)
            .await?;
        Ok(FlowError::InvalidCredentials)
    }

    /// Ends the session of `state` (pending or full), whatever it is. Signing out twice is harmless.
    #[tracing::instrument(level = "debug", name = "flow.logout", skip_all)]
    pub async fn logout(&self, state: LoginState, who: &Requester) -> FlowResult<()> {
        let digest = match &state {
            LoginState::SignedOut => return Ok(()),
            LoginState::Pending(pending) => {
                machine::transition::<PendingLogin, SignedOut>(Step::SignOut)?;
                pending.digest()
            }
            LoginState::SignedIn(full) => {
                machine::transition::<FullSession, SignedOut>(Step::SignOut)?;
                full.digest()
            }
        };
        self.sessions.forget(digest);
        // Of two logouts racing on two instances, only the one that deleted the row audits it.
        if let Some(session) = self.store.delete_session(digest).await? {
            self.audit(
                Event::Logout,
                Outcome::Success,
                who,
                Some((session.user_id, &session.user.username)),
                Some(&session.flow_id),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Ends the account's sessions but `keep` (the one that just changed a factor), here and in the database, and
    /// forgets what this instance remembers of all of them (the one kept is read again with its new factors).
    pub(super) async fn end_other_sessions(&self, user: UserId, keep: &FullSession) -> FlowResult<()> {
        self.store.delete_user_sessions(user, Some(keep.id())).await?;
        self.sessions.forget_user(user, None);
        Ok(())
    }

    /// Deletes expired sessions; the server runs this periodically.
    #[tracing::instrument(level = "debug", name = "flow.purge_expired_sessions", skip_all)]
    pub async fn purge_expired_sessions(&self) -> FlowResult<u64> {
        Ok(self
            .store
            .purge_expired_sessions(self.now_unix(), self.settings.session_idle_seconds)
            .await?)
    }
}
