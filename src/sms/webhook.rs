//! The generic gateway: `POST {url}` with `{"to": "+15551234567", "message": "…"}` and, when a token is set,
//! `Authorization: Bearer {token}`. Any 2xx means accepted.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

use super::{classify, http_client, transient, AttemptError, PhoneNumber, SmsGateway};

pub struct WebhookGateway {
    client: reqwest::Client,
    url: Url,
    token: Option<SecretString>,
}

impl WebhookGateway {
    pub fn new(url: Url, token: Option<SecretString>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: http_client()?,
            url,
            token,
        })
    }
}

#[async_trait]
impl SmsGateway for WebhookGateway {
    async fn attempt(&self, to: &PhoneNumber, message: &str, timeout: Duration) -> Result<(), AttemptError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .timeout(timeout)
            .json(&json!({ "to": to.as_str(), "message": message }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = request.send().await.map_err(transient)?;
        classify(response.status())
    }
}
