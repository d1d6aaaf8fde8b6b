//! Sending one-time codes by SMS: the [`SmsGateway`] trait, its three gateways (a generic JSON webhook, Twilio's
//! Messages API, and the log for development), phone numbers, and the retry policy around every send.
//!
//! A send either reaches a gateway that accepts it, or fails as a whole with [`SmsError`]: the caller stores a code
//! only after acceptance, so a failed send leaves nothing behind.

mod console;
mod settings;
mod twilio;
mod webhook;

pub use console::ConsoleGateway;
pub use settings::{SmsConfig, SmsGatewayConfig};
pub use twilio::TwilioGateway;
pub use webhook::WebhookGateway;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

/// A phone number in E.164 form: `+`, a country code not starting with 0, 7 to 15 digits in all. Spaces, dashes,
/// dots and parentheses are dropped first, so "+1 (555) 123-4567" is accepted as "+15551234567".
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > 32 {
            return None;
        }
        let compact: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+')?;
        let valid =
            (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        valid.then_some(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What may be shown back: the country's first digit and the last two, e.g. `+1•••••67`.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        format!("+{}•••••{}", &digits[..1], &digits[digits.len() - 2..])
    }
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// Why one call to a gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// Worth another try: no connection, a timeout, or a 5xx.
    #[error("{0}")]
    Transient(String),
    /// The gateway refused the message (a 4xx): trying again would be refused again.
    #[error("{0}")]
    Refused(String),
}

/// Why a send failed after the retries.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("the SMS gateway did not accept the message after {tries} tries: {last}")]
    Unavailable { tries: u32, last: String },
    #[error("the SMS gateway refused the message: {0}")]
    Refused(String),
}

/// One way of handing a text message to a carrier.
#[async_trait]
pub trait SmsGateway: Send + Sync + 'static {
    /// One try, bounded by `timeout`.
    async fn attempt(&self, to: &PhoneNumber, message: &str, timeout: Duration) -> Result<(), AttemptError>;
}

/// A gateway with the retry policy: up to 3 tries within about 10 s (at least one full `timeout` each), with a
/// short backoff between them; 4xx answers are not retried.
#[derive(Clone)]
pub struct Sender {
    gateway: Arc<dyn SmsGateway>,
    timeout: Duration,
}

const TRIES: u32 = 3;
const BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_millis(1000)];
const BUDGET: Duration = Duration::from_secs(10);

impl Sender {
    pub fn new(gateway: Arc<dyn SmsGateway>, timeout: Duration) -> Self {
        Self { gateway, timeout }
    }

    /// The sender the configuration asks for.
    pub fn from_config(config: &SmsConfig) -> Result<Self, reqwest::Error> {
        let gateway: Arc<dyn SmsGateway> = match &config.gateway {
            SmsGatewayConfig::Http { url, token } => Arc::new(WebhookGateway::new(url.clone(), token.clone())?),
            SmsGatewayConfig::Twilio {
                account_sid,
                auth_token,
                from,
                base_url,
            } => Arc::new(TwilioGateway::new(
                base_url,
                account_sid.clone(),
                auth_token.clone(),
                from.clone(),
            )?),
            SmsGatewayConfig::Console => Arc::new(ConsoleGateway),
        };
        Ok(Self::new(gateway, config.timeout))
    }

    pub async fn send(&self, to: &PhoneNumber, message: &str) -> Result<(), SmsError> {
        let deadline = Instant::now() + BUDGET.max(self.timeout);
        let mut last = String::new();
        for attempt in 0..TRIES {
            let left = deadline.saturating_duration_since(Instant::now());
            if attempt > 0 && left.is_zero() {
                return Err(SmsError::Unavailable { tries: attempt, last });
            }
            match self.gateway.attempt(to, message, self.timeout.min(left)).await {
                Ok(()) => return Ok(()),
                Err(AttemptError::Refused(reason)) => return Err(SmsError::Refused(reason)),
                Err(AttemptError::Transient(reason)) => {
                    tracing::warn!(attempt = attempt + 1, %reason, "SMS gateway call failed");
                    last = reason;
                }
            }
            if let Some(pause) = BACKOFF.get(attempt as usize) {
                let pause = (*pause).min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
        Err(SmsError::Unavailable { tries: TRIES, last })
    }
}

/// Classifies a reqwest failure: everything but an HTTP answer is transient.
fn transient(error: reqwest::Error) -> AttemptError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // Only the kind: reqwest's text can contain the URL, and a webhook URL may carry a credential.
    AttemptError::Transient(kind.to_owned())
}

/// Classifies an HTTP answer: 2xx accepted, 5xx transient, anything else refused.
fn classify(status: reqwest::StatusCode) -> Result<(), AttemptError> {
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() {
        Err(AttemptError::Transient(format!("answered {status}")))
    } else {
        Err(AttemptError::Refused(format!("answered {status}")))
    }
}

fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("twofold/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn phone_numbers() {
        assert_eq!(PhoneNumber::parse("+15551234567").unwrap().as_str(), "+15551234567");
        assert_eq!(
            PhoneNumber::parse("+1 (555) 123-4567").unwrap().as_str(),
            "+15551234567"
        );
        assert_eq!(PhoneNumber::parse("+15551234567").unwrap().masked(), "+1•••••67");
        for bad in [
            "15551234567",
            "+",
            "+0555123456",
            "+1555",
            "+1234567890123456",
            "+1555abc4567",
            "+1555１２３4567",
            "",
            "++15551234567",
        ] {
            assert!(PhoneNumber::parse(bad).is_none(), "{bad:?}");
        }
        assert!(PhoneNumber::parse(&format!("+1{}", "5".repeat(100))).is_none());
        assert!(!format!("{:?}", PhoneNumber::parse("+15551234567").unwrap()).contains("5551234"));
    }

    /// Fails transiently `failures` times, then accepts.
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
        refuse: bool,
    }

    #[async_trait]
    impl SmsGateway for Flaky {
        async fn attempt(&self, _: &PhoneNumber, _: &str, _: Duration) -> Result<(), AttemptError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.refuse {
                Err(AttemptError::Refused("400".into()))
            } else if call < self.failures {
                Err(AttemptError::Transient("503".into()))
            } else {
                Ok(())
            }
        }
    }

    async fn send_with(failures: u32, refuse: bool) -> (Result<(), SmsError>, u32) {
        let gateway = Arc::new(Flaky {
            failures,
            calls: AtomicU32::new(0),
            refuse,
        });
        let sender = Sender::new(gateway.clone(), Duration::from_millis(50));
        let phone = PhoneNumber::parse("+15551234567").unwrap();
        let result = sender.send(&phone, "hi").await;
        (result, gateway.calls.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_but_not_refusals() {
        let (ok, calls) = send_with(2, false).await;
        assert!(ok.is_ok());
        assert_eq!(calls, 3);
        let (down, calls) = send_with(5, false).await;
        assert!(matches!(down, Err(SmsError::Unavailable { tries: 3, .. })));
        assert_eq!(calls, 3);
        let (refused, calls) = send_with(0, true).await;
        assert!(matches!(refused, Err(SmsError::Refused(_))));
        assert_eq!(calls, 1);
    }
}
