//! The development gateway: the message goes to the server's log instead of a phone. It exists so that SMS can be
//! tried without an account at a provider; the server warns loudly at start when it is chosen.

use std::time::Duration;

use async_trait::async_trait;

use super::{AttemptError, PhoneNumber, SmsGateway};

pub struct ConsoleGateway;

#[async_trait]
impl SmsGateway for ConsoleGateway {
    async fn attempt(&self, to: &PhoneNumber, message: &str, _timeout: Duration) -> Result<(), AttemptError> {
        tracing::warn!(to = to.as_str(), message, "SMS (console gateway, development only)");
        Ok(())
    }
}
