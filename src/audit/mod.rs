//! Audit events: one row per step of every login and every change to an account, stored in the database with time,
//! user, client address, user agent, event, method and outcome. Events carry no secret: no password, code, token or
//! secret ever reaches an [`AuditEvent`], because none of its fields can hold one by type.

pub mod chain;

use time::OffsetDateTime;

use crate::ids::UserId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Register,
    Login,
    SecondFactor,
    Logout,
    TotpSetup,
    TotpConfirm,
    TotpRemove,
    RecoveryCodesRegenerate,
    SmsSend,
    SmsSetup,
    SmsConfirm,
    SmsRemove,
    UserAdd,
    UserDelete,
    UserReset2fa,
    UserUnlock,
    SessionRevoke,
    StepUp,
    AuditPrune,
    PasswordChange,
    UserPasswd,
    UserDisable,
    UserEnable,
    UserEdit,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::SecondFactor => "second_factor",
            Self::Logout => "logout",
            Self::TotpSetup => "totp_setup",
            Self::TotpConfirm => "totp_confirm",
            Self::TotpRemove => "totp_remove",
            Self::RecoveryCodesRegenerate => "recovery_codes_regenerate",
            Self::SmsSend => "sms_send",
            Self::SmsSetup => "sms_setup",
            Self::SmsConfirm => "sms_confirm",
            Self::SmsRemove => "sms_remove",
            Self::UserAdd => "user_add",
            Self::UserDelete => "user_delete",
            Self::UserReset2fa => "user_reset_2fa",
            Self::UserUnlock => "user_unlock",
            Self::SessionRevoke => "session_revoke",
            Self::StepUp => "step_up",
            Self::AuditPrune => "audit_prune",
            Self::PasswordChange => "password_change",
            Self::UserPasswd => "user_passwd",
            Self::UserDisable => "user_disable",
            Self::UserEnable => "user_enable",
            Self::UserEdit => "user_edit",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The password was right and a second factor is now required.
    SecondFactorRequired,
    InvalidCredentials,
    InvalidCode,
    /// A TOTP code whose step was already used (or an older one).
    Replay,
    Throttled,
    Locked,
    /// This failure engaged the account's second-factor lock.
    LockEngaged,
    NoPendingLogin,
    Refused,
    /// The right password of an account an operator disabled: answered as a wrong one.
    Disabled,
    /// The SMS gateway could not be reached or failed (timeouts, connection errors, 5xx) on every try.
    GatewayUnavailable,
    /// The SMS gateway refused the message (4xx).
    GatewayRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::SecondFactorRequired => "second_factor_required",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidCode => "invalid_code",
            Self::Replay => "replay",
            Self::Throttled => "throttled",
            Self::Locked => "locked",
            Self::LockEngaged => "lock_engaged",
            Self::NoPendingLogin => "no_pending_login",
            Self::Refused => "refused",
            Self::Disabled => "disabled",
            Self::GatewayUnavailable => "gateway_unavailable",
            Self::GatewayRefused => "gateway_refused",
        }
    }
}

/// Who asked: the client's address and user agent as the HTTP layer saw them, or the operator's command line.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

impl Requester {
    pub fn command_line() -> Self {
        Self {
            client_addr: Some("command line".into()),
            user_agent: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    pub flow_id: Option<String>,
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub requester: Requester,
    pub event: Event,
    pub method: Option<&'static str>,
    pub outcome: Outcome,
}

impl AuditEvent {
    /// The event time as stored: unix milliseconds.
    pub fn at_ms(&self) -> i64 {
        i64::try_from(self.at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// What the chain's MAC covers; the store writes exactly these values.
    pub fn content(&self) -> chain::Content<'_> {
        chain::Content {
            at_ms: self.at_ms(),
            flow_id: self.flow_id.as_deref(),
            user_id: self.user_id.map(|id| id.0),
            username: self.username.as_deref(),
            client_addr: self.requester.client_addr.as_deref(),
            user_agent: self.requester.user_agent.as_deref(),
            event: self.event.as_str(),
            method: self.method,
            outcome: self.outcome.as_str(),
        }
    }
}

/// Which events `twofold audit` lists.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub username: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub event: Option<String>,
    pub outcome: Option<String>,
    pub flow_id: Option<String>,
}
