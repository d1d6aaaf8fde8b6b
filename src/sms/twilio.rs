//! Twilio's Messages API: `POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, form fields `To`,
//! `From`, `Body`, HTTP basic auth `account_sid:auth_token`. `base_url` is configurable so tests can point it at a
//! local stand-in.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{classify, http_client, transient, AttemptError, PhoneNumber, SmsGateway};

pub struct TwilioGateway {
    client: reqwest::Client,
    endpoint: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
}

impl TwilioGateway {
    pub fn new(
        base_url: &Url,
        account_sid: String,
        auth_token: SecretString,
        from: String,
    ) -> Result<Self, reqwest::Error> {
        let base = base_url.as_str().trim_end_matches('/');
        let sid = percent_encoding::utf8_percent_encode(&account_sid, percent_encoding::NON_ALPHANUMERIC);
        Ok(Self {
            client: http_client()?,
            endpoint: format!("{base}/2010-04-01/Accounts/{sid}/Messages.json"),
            account_sid,
            auth_token,
            from,
        })
    }
}

#[async_trait]
impl SmsGateway for TwilioGateway {
    async fn attempt(&self, to: &PhoneNumber, message: &str, timeout: Duration) -> Result<(), AttemptError> {
        let response = self
            .client
            .post(&self.endpoint)
            .timeout(timeout)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&[("To", to.as_str()), ("From", self.from.as_str()), ("Body", message)])
            .send()
            .await
            .map_err(transient)?;
        classify(response.status())
    }
}
