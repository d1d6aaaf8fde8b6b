//! The SMS gateway as configured: what `[sms]` says once it has been checked.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

/// The SMS gateway chosen under `[sms]`.
#[derive(Clone)]
pub enum SmsGatewayConfig {
    /// A generic JSON webhook: `POST url` with `{"to","message"}`, `Authorization: Bearer token` when set.
    Http { url: Url, token: Option<SecretString> },
    /// Twilio's Messages API at `base_url`.
    Twilio {
        account_sid: String,
        auth_token: SecretString,
        from: String,
        base_url: Url,
    },
    /// Writes messages to the log: development only.
    Console,
}

impl std::fmt::Debug for SmsGatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { url, .. } => write!(f, "Http({url})"),
            Self::Twilio { base_url, .. } => write!(f, "Twilio({base_url})"),
            Self::Console => f.write_str("Console"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub gateway: SmsGatewayConfig,
    /// How long one call to the gateway may take.
    pub timeout: Duration,
    /// Texts all accounts together may be sent in an hour (the ceiling on what SMS pumping can cost); the flow's
    /// default when unset.
    pub budget_per_hour: Option<i64>,
}

impl SmsConfig {
    /// Codes go to the log, not to phones.
    pub fn is_console(&self) -> bool {
        matches!(self.gateway, SmsGatewayConfig::Console)
    }
}
