//! What the operator's command line asks of the flow: the audit trail (listing, verifying, pruning, one login's
//! events), a user's state, sessions and revoking them, and whether the database answers.

use std::ops::ControlFlow;

use super::rules::{self, Lock};
use super::{Flow, FlowError, FlowResult, Username};
use crate::audit::chain::{self, AuditRecord, Head, Verdict};
use crate::audit::{AuditFilter, Event, Outcome, Requester};
use crate::store::{Session, SessionId, SessionState, User};

/// Events read per query when the chain is walked: memory stays bounded however long the trail.
const AUDIT_PAGE: i64 = 1_000;

/// What `audit prune` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruned {
    /// Deleted this many events.
    Events(u64),
    /// Deleted nothing: the chain does not verify, and pruning would destroy the evidence.
    Refused(Verdict),
}

/// `twofold user show`.
#[derive(Debug, Clone)]
pub struct UserDetails {
    pub username: String,
    pub created_at: i64,
    pub totp: bool,
    pub sms_phone: Option<String>,
    pub recovery_codes_left: i64,
    pub last_login_at: Option<i64>,
    pub consecutive_failures: i64,
    pub lock: Lock,
    pub sessions: usize,
    /// When an operator disabled the account, if they did.
    pub disabled_at: Option<i64>,
    /// What apps are told about the user.
    pub profile: crate::store::Profile,
}

impl Flow {
    #[tracing::instrument(level = "debug", name = "flow.audit_events", skip_all)]
    pub async fn audit_events(&self, filter: &AuditFilter) -> FlowResult<Vec<AuditRecord>> {
        Ok(self.store.audit_events(filter).await?)
    }

    /// Checks the whole trail's MAC chain, a page of events at a time, and that the event `head` names (as
    /// `audit head` printed it) is still there.
    #[tracing::instrument(level = "debug", name = "flow.verify_audit", skip_all)]
    pub async fn verify_audit(&self, head: Option<&Head>) -> FlowResult<Verdict> {
        let anchor = self.store.audit_anchor().await?;
        let mut checker = match chain::Checker::new(&self.keys, anchor.as_ref(), head) {
            Ok(checker) => checker,
            Err(verdict) => return Ok(verdict),
        };
        let after = anchor.map_or(0, |anchor| anchor.last_seq);
        let broken = self
            .walk_chain(after, |record| match checker.check(record) {
                Err(verdict) => ControlFlow::Break(verdict),
                Ok(()) => ControlFlow::Continue(()),
            })
            .await?;
        Ok(broken.unwrap_or_else(|| checker.finish()))
    }

    /// Shows `visit` the chain's events numbered after `after`, in order, a page at a time, until it breaks (its
    /// value is returned) or the chain ends (`None`).
    async fn walk_chain<T>(
        &self,
        mut after: i64,
        mut visit: impl FnMut(&AuditRecord) -> ControlFlow<T>,
    ) -> FlowResult<Option<T>> {
        loop {
            let page = self.store.audit_page(after, AUDIT_PAGE).await?;
            for record in &page {
                if let ControlFlow::Break(value) = visit(record) {
                    return Ok(Some(value));
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == AUDIT_PAGE => after = last.seq,
                _ => return Ok(None),
            }
        }
    }

    /// The newest event's number and MAC, for the operator to keep elsewhere.
    #[tracing::instrument(level = "debug", name = "flow.audit_head", skip_all)]
    pub async fn audit_head(&self) -> FlowResult<Option<Head>> {
        Ok(self.store.audit_head().await?)
    }

    /// Deletes events older than the retention period, keeping the chain verifiable. It walks the chain from its
    /// start, by number, and cuts before the first event that is not older than the retention: an old time on a
    /// newer event (a clock that jumped, an edit) never takes the events before it along. Every event it would
    /// delete is verified first; if one does not verify, nothing is deleted and an audit event says so, or the
    /// evidence would go with it.
    #[tracing::instrument(level = "debug", name = "flow.prune_audit", skip_all)]
    pub async fn prune_audit(&self, who: &Requester) -> FlowResult<Pruned> {
        let now_ms = i64::try_from(self.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let before_ms = now_ms.saturating_sub(self.settings.audit_retention_seconds.saturating_mul(1000));
        let anchor = self.store.audit_anchor().await?;
        let after = anchor.as_ref().map_or(0, |anchor| anchor.last_seq);
        let walked = match chain::Checker::new(&self.keys, anchor.as_ref(), None) {
            Ok(checker) => self.walk_to_cut(checker, after, before_ms).await?,
            Err(verdict) => Err(verdict),
        };
        let cut = match walked {
            Ok(Some(cut)) => cut,
            Ok(None) => return Ok(Pruned::Events(0)),
            Err(verdict) => {
                self.audit(Event::AuditPrune, Outcome::Refused, who, None, None, None)
                    .await?;
                return Ok(Pruned::Refused(verdict));
            }
        };
        let anchor_mac = chain::anchor_mac(&self.keys, cut.seq, cut.at_ms, &cut.mac);
        let pruned = self.store.prune_audit(&cut, &anchor_mac).await?;
        if pruned > 0 {
            self.audit(Event::AuditPrune, Outcome::Success, who, None, None, None)
                .await?;
        }
        Ok(Pruned::Events(pruned))
    }

    /// The last event of the chain's oldest run of events older than `before_ms`, each verified on the way.
    async fn walk_to_cut(
        &self,
        mut checker: chain::Checker<'_>,
        after: i64,
        before_ms: i64,
    ) -> FlowResult<Result<Option<chain::Cut>, Verdict>> {
        let mut cut = None;
        let stopped = self
            .walk_chain(after, |record| {
                if record.at_ms >= before_ms {
                    return ControlFlow::Break(Ok(()));
                }
                if let Err(verdict) = checker.check(record) {
                    return ControlFlow::Break(Err(verdict));
                }
                cut = Some(chain::Cut::at(record));
                ControlFlow::Continue(())
            })
            .await?;
        Ok(match stopped {
            Some(Err(verdict)) => Err(verdict),
            Some(Ok(())) | None => Ok(cut),
        })
    }

    pub(super) async fn user_named(&self, username: &str) -> FlowResult<User> {
        let name = Username::parse(username).ok_or_else(|| FlowError::NoSuchUser(username.to_owned()))?;
        self.store
            .user_by_name(name.as_str())
            .await?
            .ok_or_else(|| FlowError::NoSuchUser(username.to_owned()))
    }

    #[tracing::instrument(level = "debug", name = "flow.user_details", skip_all)]
    pub async fn user_details(&self, username: &str) -> FlowResult<UserDetails> {
        let user = self.user_named(username).await?;
        let lock = rules::lock(
            user.second_factor_failures,
            user.second_factor_locked_until,
            self.now_unix(),
        );
        let sessions = self.store.list_sessions(Some(user.id)).await?.len();
        Ok(UserDetails {
            username: user.username.clone(),
            created_at: user.created_at,
            totp: user.totp_secret.is_some(),
            sms_phone: self.masked_phone(&user)?,
            recovery_codes_left: user.recovery_codes_left,
            last_login_at: user.last_login_at,
            consecutive_failures: user.second_factor_failures,
            lock,
            sessions,
            disabled_at: user.disabled_at,
            profile: user.profile.clone(),
        })
    }

    /// Sessions that are still alive, of one user or all.
    #[tracing::instrument(level = "debug", name = "flow.list_sessions", skip_all)]
    pub async fn list_sessions(&self, username: Option<&str>) -> FlowResult<Vec<Session>> {
        let user = match username {
            Some(name) => Some(self.user_named(name).await?.id),
            None => None,
        };
        let now = self.now_unix();
        let idle = self.settings.session_idle_seconds;
        Ok(self
            .store
            .list_sessions(user)
            .await?
            .into_iter()
            .filter(|s| match s.state.0 {
                SessionState::Pending => rules::pending_alive(s.expires_at, s.failed_attempts, now),
                SessionState::Full => rules::full_alive(s.expires_at, s.last_seen_at, now, idle),
            })
            .collect())
    }

    /// Ends one session by its id (as `session list` shows it).
    #[tracing::instrument(level = "debug", name = "flow.revoke_session", skip_all)]
    pub async fn revoke_session(&self, id: i64) -> FlowResult<()> {
        let session = self
            .store
            .delete_session_by_id(SessionId(id), None)
            .await?
            .ok_or(FlowError::NoSuchSession(id))?;
        self.sessions.forget_session(session.id);
        let who = Requester::command_line();
        let subject = Some((session.user_id, session.user.username.as_str()));
        self.audit(
            Event::SessionRevoke,
            Outcome::Success,
            &who,
            subject,
            Some(&session.flow_id),
            None,
        )
        .await
    }

    /// Ends every session of a user; returns how many ended.
    #[tracing::instrument(level = "debug", name = "flow.revoke_user_sessions", skip_all)]
    pub async fn revoke_user_sessions(&self, username: &str) -> FlowResult<u64> {
        let user = self.user_named(username).await?;
        let ended = self.store.delete_user_sessions(user.id, None).await?;
        self.sessions.forget_user(user.id, None);
        let who = Requester::command_line();
        self.audit(
            Event::SessionRevoke,
            Outcome::Success,
            &who,
            Some((user.id, &user.username)),
            None,
            None,
        )
        .await?;
        Ok(ended)
    }

    /// Whether the database answers (for `/readyz`).
    #[tracing::instrument(level = "debug", name = "flow.ready", skip_all)]
    pub async fn ready(&self) -> FlowResult<()> {
        Ok(self.store.ping().await?)
    }
}
