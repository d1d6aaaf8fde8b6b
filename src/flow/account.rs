//! Accounts: self-service registration (when allowed) and the operator's commands.

use super::rules::{self, Lock};
use super::state::{unix_time, FullSession, RecentSession};
use super::{Flow, FlowError, FlowResult, Username};
use crate::audit::{Event, Outcome, Requester};
use crate::crypto::password::{check_new_password, Password};
use crate::store::{PasswordChange, Profile, SessionId, SessionState, StoreError, User};
use time::OffsetDateTime;

/// What the operator asks of a user's profile (`user add`, `user edit`), as typed; checked by [`ProfileChange::apply`].
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// The new email address; `Some("")` removes it.
    pub email: Option<String>,
    /// The new display name; `Some("")` removes it.
    pub display_name: Option<String>,
    pub add_groups: Vec<String>,
    pub remove_groups: Vec<String>,
}

/// Groups one user may have: every one goes into each answer to an app's proxy.
const MAX_GROUPS: usize = 100;

impl ProfileChange {
    /// `profile` with this change made, or what is wrong with it. Everything is checked before anything is stored:
    /// these values reach other programs as HTTP headers and token claims.
    fn apply(&self, profile: &Profile) -> FlowResult<Profile> {
        let text = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        let mut next = profile.clone();
        if let Some(email) = &self.email {
            next.email = text(email);
            if let Some(email) = &next.email {
                let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.ends_with('.')
                });
                if email.len() > 254 || !well_formed || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(FlowError::BadRequest(
                        "an email address looks like name@example.com: no spaces, at most 254 characters".into(),
                    ));
                }
            }
        }
        if let Some(name) = &self.display_name {
            next.display_name = text(name);
            if next
                .display_name
                .as_ref()
                .is_some_and(|name| name.chars().count() > 128 || name.chars().any(char::is_control))
            {
                return Err(FlowError::BadRequest(
                    "a display name is at most 128 characters, without control characters".into(),
                ));
            }
        }
        let mut groups: Vec<String> = profile.groups().map(str::to_owned).collect();
        for group in &self.add_groups {
            let valid = (1..=64).contains(&group.len())
                && group
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if !valid {
                return Err(FlowError::BadRequest(format!(
                    "{group:?} is not a group name: 1 to 64 of a-z, 0-9, _ and -"
                )));
            }
            groups.push(group.clone());
        }
        groups.retain(|group| !self.remove_groups.contains(group));
        groups.sort();
        groups.dedup();
        if groups.len() > MAX_GROUPS {
            return Err(FlowError::BadRequest(format!("a user has at most {MAX_GROUPS} groups")));
        }
        next.groups = groups.join(",");
        Ok(next)
    }
}

/// One place a person is signed in, as their session list shows it.
#[derive(Debug, Clone)]
pub struct SignedInSession {
    pub id: i64,
    /// When this sign-in happened.
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// The client's address, as the session last saw it.
    pub client: Option<String>,
    /// The `User-Agent` header as sent.
    pub user_agent: Option<String>,
    /// The browser and system in plain words: "Firefox on Linux".
    pub device: String,
    /// The second factor the sign-in used, if any.
    pub second_factor: Option<String>,
    /// Whether it is the session asking.
    pub current: bool,
}

/// A user agent in plain words ("Firefox on Linux", "Safari on iPhone"), parsed with woothee's dataset; "Unknown
/// browser" when it names nothing the dataset knows.
pub fn device_name(user_agent: Option<&str>) -> String {
    const UNKNOWN: &str = "UNKNOWN";
    let parser = woothee::parser::Parser::new();
    match user_agent.and_then(|agent| parser.parse(agent)) {
        Some(found) if found.name != UNKNOWN && found.os != UNKNOWN => format!("{} on {}", found.name, found.os),
        Some(found) if found.name != UNKNOWN => found.name.to_owned(),
        _ => "Unknown browser".to_owned(),
    }
}

/// One line of `twofold user list`.
#[derive(Debug, Clone)]
pub struct UserOverview {
    pub username: String,
    pub created_at: i64,
    pub totp: bool,
    pub sms: bool,
    pub recovery_codes_left: i64,
    pub lock: Lock,
    pub last_login_at: Option<i64>,
    pub disabled: bool,
    pub groups: Vec<String>,
}

impl Flow {
    /// Self-service sign-up; only when `allow_registration` is on, and throttled per client address.
    #[tracing::instrument(level = "debug", name = "flow.register", skip_all)]
    pub async fn register(&self, username: &str, password: &str, who: &Requester) -> FlowResult<String> {
        if !self.settings.allow_registration {
            self.audit(Event::Register, Outcome::Refused, who, None, None, None)
                .await?;
            return Err(FlowError::RegistrationDisabled);
        }
        // Malformed input costs nothing to refuse, so it is refused before it can use up the address's allowance.
        let (username, password) = self.new_account(username, password)?;
        let throttle = rules::registration_throttle_keys(who.client_addr.as_deref());
        if let Err(throttled) = self.store.reserve_password_attempt(&throttle, self.now_unix()).await? {
            self.audit(Event::Register, Outcome::Throttled, who, None, None, None)
                .await?;
            return Err(FlowError::TooManyAttempts {
                retry_after: throttled.retry_after,
                message: "too many accounts were created from this address lately; wait before trying again".into(),
            });
        }
        self.create_user(username, password, Profile::default(), who, Event::Register)
            .await
    }

    fn new_account(&self, username: &str, password: &str) -> FlowResult<(Username, Password)> {
        let username = Username::parse(username).ok_or(FlowError::InvalidUsername)?;
        let password =
            check_new_password(password, username.as_str(), &self.settings.issuer).map_err(FlowError::WeakPassword)?;
        Ok((username, password))
    }

    /// An operator adds a user (works whether or not registration is allowed), with what apps are told about them.
    #[tracing::instrument(level = "debug", name = "flow.add_user", skip_all)]
    pub async fn add_user(&self, username: &str, password: &str, profile: &ProfileChange) -> FlowResult<String> {
        let (username, password) = self.new_account(username, password)?;
        let profile = profile.apply(&Profile::default())?;
        self.create_user(username, password, profile, &Requester::command_line(), Event::UserAdd)
            .await
    }

    /// The operator changes what apps are told about a user (`twofold user edit`).
    #[tracing::instrument(level = "debug", name = "flow.edit_user", skip_all)]
    pub async fn edit_user(&self, username: &str, change: &ProfileChange) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        let profile = change.apply(&user.profile)?;
        if !self.store.set_profile(user.id, &profile).await? {
            return Err(FlowError::NoSuchUser(username.to_owned()));
        }
        self.sessions.forget_user(user.id, None);
        self.operator_did(Event::UserEdit, &user).await
    }

    async fn create_user(
        &self,
        username: Username,
        password: Password,
        profile: Profile,
        who: &Requester,
        event: Event,
    ) -> FlowResult<String> {
        // A taken name is refused before the hash is paid for (the insert below still decides a race).
        if self.store.user_by_name(username.as_str()).await?.is_some() {
            self.audit(event, Outcome::Refused, who, None, None, None).await?;
            return Err(FlowError::UsernameTaken);
        }
        let hash = self.hasher.hash(password).await?;
        let id = match self
            .store
            .create_user(username.as_str(), &hash, &profile, self.now_unix())
            .await
        {
            Ok(id) => id,
            Err(StoreError::UsernameTaken) => {
                self.audit(event, Outcome::Refused, who, None, None, None).await?;
                return Err(FlowError::UsernameTaken);
            }
            Err(other) => return Err(other.into()),
        };
        self.audit(event, Outcome::Success, who, Some((id, username.as_str())), None, None)
            .await?;
        Ok(username.0)
    }

    /// A signed-in person changes their password. The current one proves it is them and counts toward the password
    /// throttle as a sign-in does; the new one follows registration's rules; every other session of the account ends,
    /// pending ones included, and this one stays.
    #[tracing::instrument(level = "debug", name = "flow.change_password", skip_all)]
    pub async fn change_password(
        &self,
        session: &RecentSession,
        current: &str,
        new: &str,
        who: &Requester,
    ) -> FlowResult<()> {
        let user = self
            .store
            .user_by_id(session.user_id())
            .await?
            .ok_or(FlowError::Unauthenticated)?;
        let current = Password::new(current)
            .ok_or_else(|| FlowError::BadRequest("the current password must be 1 to 1024 characters".into()))?;
        // The new password's rules say nothing about the current one, so they are applied before an attempt is used.
        let new = check_new_password(new, &user.username, &self.settings.issuer).map_err(FlowError::WeakPassword)?;
        let subject = Some((user.id, user.username.as_str()));
        let audit = |outcome| {
            self.audit(
                Event::PasswordChange,
                outcome,
                who,
                subject,
                Some(session.flow_id()),
                None,
            )
        };
        let throttle = rules::password_throttle_keys(&user.username, who.client_addr.as_deref());
        if let Err(throttled) = self.store.reserve_password_attempt(&throttle, self.now_unix()).await? {
            audit(Outcome::Throttled).await?;
            return Err(FlowError::TooManyAttempts {
                retry_after: throttled.retry_after,
                message: "too many wrong passwords; wait before trying again".into(),
            });
        }
        if !self.hasher.verify(current, Some(user.password_hash.clone())).await? {
            audit(Outcome::InvalidCredentials).await?;
            return Err(FlowError::WrongPassword);
        }
        let hash = self.hasher.hash(new).await?;
        let change = PasswordChange {
            user: user.id,
            expected_hash: Some(&user.password_hash),
            new_hash: &hash,
            keep: Some(session.id()),
            refund: &throttle,
        };
        if !self.store.change_password(&change).await? {
            // Changed meanwhile (another of the person's sessions, or the operator): what was typed is no longer the
            // current password.
            audit(Outcome::InvalidCredentials).await?;
            return Err(FlowError::WrongPassword);
        }
        self.sessions.forget_user(user.id, None);
        audit(Outcome::Success).await
    }

    /// The operator sets a user's password (`twofold user passwd`): registration's rules, and every session of the
    /// account ends, pending ones included. The second factors stay.
    #[tracing::instrument(level = "debug", name = "flow.set_password", skip_all)]
    pub async fn set_password(&self, username: &str, password: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        let password =
            check_new_password(password, &user.username, &self.settings.issuer).map_err(FlowError::WeakPassword)?;
        let hash = self.hasher.hash(password).await?;
        let change = PasswordChange {
            user: user.id,
            expected_hash: None,
            new_hash: &hash,
            keep: None,
            refund: &[],
        };
        if !self.store.change_password(&change).await? {
            return Err(FlowError::NoSuchUser(username.to_owned()));
        }
        self.sessions.forget_user(user.id, None);
        self.operator_did(Event::UserPasswd, &user).await
    }

    /// The operator disables an account (`twofold user disable`): its sign-ins are answered as a wrong password
    /// would be, and all its sessions end at once. Its password and factors stay, for `enable`.
    #[tracing::instrument(level = "debug", name = "flow.disable_user", skip_all)]
    pub async fn disable_user(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        if !self.store.set_disabled(user.id, Some(self.now_unix())).await? {
            return Err(FlowError::NoSuchUser(username.to_owned()));
        }
        self.sessions.forget_user(user.id, None);
        self.operator_did(Event::UserDisable, &user).await
    }

    #[tracing::instrument(level = "debug", name = "flow.enable_user", skip_all)]
    pub async fn enable_user(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        if !self.store.set_disabled(user.id, None).await? {
            return Err(FlowError::NoSuchUser(username.to_owned()));
        }
        self.operator_did(Event::UserEnable, &user).await
    }

    /// Audits an operator's command that succeeded on `user`.
    async fn operator_did(&self, event: Event, user: &User) -> FlowResult<()> {
        let who = Requester::command_line();
        self.audit(
            event,
            Outcome::Success,
            &who,
            Some((user.id, &user.username)),
            None,
            None,
        )
        .await
    }

    /// Where the person is signed in: the account's live full sessions, newest first, this one marked.
    #[tracing::instrument(level = "debug", name = "flow.signed_in_sessions", skip_all)]
    pub async fn signed_in_sessions(&self, session: &FullSession) -> FlowResult<Vec<SignedInSession>> {
        let now = self.now_unix();
        let idle = self.settings.session_idle_seconds;
        Ok(self
            .store
            .list_sessions(Some(session.user_id()))
            .await?
            .into_iter()
            .filter(|s| s.state.0 == SessionState::Full && rules::full_alive(s.expires_at, s.last_seen_at, now, idle))
            .map(|s| SignedInSession {
                id: s.id.0,
                created_at: unix_time(s.authenticated_at.unwrap_or(s.created_at)),
                last_seen_at: unix_time(s.last_seen_at),
                device: device_name(s.user_agent.as_deref()),
                client: s.client_addr,
                user_agent: s.user_agent,
                second_factor: s.second_factor,
                current: s.id == session.id(),
            })
            .collect())
    }

    /// Ends one of the person's sessions by its id (this one too, if they ask). Another account's id is answered as
    /// an unknown one.
    #[tracing::instrument(level = "debug", name = "flow.end_session", skip_all)]
    pub async fn end_session(&self, session: &FullSession, id: i64, who: &Requester) -> FlowResult<()> {
        let ended = self
            .store
            .delete_session_by_id(SessionId(id), Some(session.user_id()))
            .await?
            .ok_or(FlowError::NoSuchSession(id))?;
        self.sessions.forget_session(ended.id);
        let subject = Some((ended.user_id, ended.user.username.as_str()));
        self.audit(
            Event::SessionRevoke,
            Outcome::Success,
            who,
            subject,
            Some(&ended.flow_id),
            None,
        )
        .await
    }

    /// Ends every session of the account but this one ("sign out everywhere else"); returns how many ended.
    #[tracing::instrument(level = "debug", name = "flow.end_other_sessions", skip_all)]
    pub async fn end_sessions_elsewhere(&self, session: &FullSession, who: &Requester) -> FlowResult<u64> {
        let ended = self
            .store
            .delete_user_sessions(session.user_id(), Some(session.id()))
            .await?;
        self.sessions.forget_user(session.user_id(), None);
        let subject = Some((session.user_id(), session.username()));
        self.audit(
            Event::SessionRevoke,
            Outcome::Success,
            who,
            subject,
            Some(session.flow_id()),
            None,
        )
        .await?;
        Ok(ended)
    }

    #[tracing::instrument(level = "debug", name = "flow.list_users", skip_all)]
    pub async fn list_users(&self) -> FlowResult<Vec<UserOverview>> {
        let now = self.now_unix();
        Ok(self
            .store
            .list_users()
            .await?
            .into_iter()
            .map(|user| UserOverview {
                lock: rules::lock(user.second_factor_failures, user.second_factor_locked_until, now),
                username: user.username,
                created_at: user.created_at,
                totp: user.totp,
                sms: user.sms,
                recovery_codes_left: user.recovery_codes_left,
                last_login_at: user.last_login_at,
                disabled: user.disabled_at.is_some(),
                groups: user
                    .groups
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
            .collect())
    }

    /// Removes every second factor and ends every session, for a user who lost their phone and recovery codes. The
    /// next sign-in asks for the password only; the user should set up a new authenticator at once.
    #[tracing::instrument(level = "debug", name = "flow.reset_second_factors", skip_all)]
    pub async fn reset_second_factors(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        self.store.reset_second_factors(user.id).await?;
        self.sessions.forget_user(user.id, None);
        self.operator_did(Event::UserReset2fa, &user).await
    }

    /// Lifts the second-factor lock (including the one at 100 failures).
    #[tracing::instrument(level = "debug", name = "flow.unlock", skip_all)]
    pub async fn unlock(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        self.store.unlock_second_factor(user.id).await?;
        self.operator_did(Event::UserUnlock, &user).await
    }

    #[tracing::instrument(level = "debug", name = "flow.delete_user", skip_all)]
    pub async fn delete_user(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        if !self.store.delete_user(user.id).await? {
            return Err(FlowError::NoSuchUser(username.to_owned()));
        }
        self.sessions.forget_user(user.id, None);
        self.operator_did(Event::UserDelete, &user).await
    }
}
