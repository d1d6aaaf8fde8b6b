//! Accounts: self-service registration (when allowed) and the operator's commands.

use super::{Flow, FlowError, FlowResult, Username};
use crate::audit::{Event, Outcome, Requester};
use crate::crypto::password::check_new_password;
use crate::store::{StoreError, UserSummary};

/// One line of `twofold user list`.
pub type UserOverview = UserSummary;

impl Flow {
    /// Self-service sign-up; only when `allow_registration` is on.
    pub async fn register(&self, username: &str, password: &str, who: &Requester) -> FlowResult<String> {
        if !self.settings.allow_registration {
            self.audit(Event::Register, Outcome::Refused, who, None, None, None)
                .await?;
            return Err(FlowError::RegistrationDisabled);
        }
        self.create_user(username, password, who, Event::Register).await
    }

    /// An operator adds a user (works whether or not registration is allowed).
    pub async fn add_user(&self, username: &str, password: &str) -> FlowResult<String> {
        self.create_user(username, password, &Requester::command_line(), Event::UserAdd)
            .await
    }

    async fn create_user(&self, username: &str, password: &str, who: &Requester, event: Event) -> FlowResult<String> {
        let username = Username::parse(username).ok_or(FlowError::InvalidUsername)?;
        let password =
            check_new_password(password, username.as_str(), &self.settings.issuer).map_err(FlowError::WeakPassword)?;
        let hash = self.hasher.hash(password).await?;
        let id = match self.store.create_user(username.as_str(), &hash, self.now_unix()).await {
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

    pub async fn list_users(&self) -> FlowResult<Vec<UserOverview>> {
        Ok(self.store.list_users().await?)
    }

    /// Removes every second factor and ends every session, for a user who lost their phone and recovery codes. The
    /// next sign-in asks for the password only; the user should set up a new authenticator at once.
    pub async fn reset_second_factors(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        self.store.reset_second_factors(user.id).await?;
        self.sessions.forget_user(user.id, None);
        let who = Requester::command_line();
        self.audit(
            Event::UserReset2fa,
            Outcome::Success,
            &who,
            Some((user.id, &user.username)),
            None,
            None,
        )
        .await
    }

    /// Lifts the second-factor lock (including the one at 100 failures).
    pub async fn unlock(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        self.store.unlock_second_factor(user.id).await?;
        let who = Requester::command_line();
        self.audit(
            Event::UserUnlock,
            Outcome::Success,
            &who,
            Some((user.id, &user.username)),
            None,
            None,
        )
        .await
    }

    pub async fn delete_user(&self, username: &str) -> FlowResult<()> {
        let user = self.user_named(username).await?;
        if !self.store.delete_user(user.id).await? {
            return Err(FlowError::NoSuchUser(username.to_owned()));
        }
        self.sessions.forget_user(user.id, None);
        let who = Requester::command_line();
        self.audit(
            Event::UserDelete,
            Outcome::Success,
            &who,
            Some((user.id, &user.username)),
            None,
            None,
        )
        .await
    }
}
