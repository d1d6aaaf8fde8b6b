//! The one place where failures become HTTP answers: `{"error": "<code>", "message": "<text for a person>"}` with
//! the contract's status, and `Retry-After` on every 429. Internal causes are logged here once and never shown.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::flow::FlowError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<FlowError> for ApiError {
    fn from(error: FlowError) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code) = match &error {
            FlowError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            FlowError::RegistrationDisabled => (S::FORBIDDEN, "registration_disabled"),
            FlowError::UsernameTaken => (S::CONFLICT, "username_taken"),
            FlowError::WeakPassword(_) => (S::BAD_REQUEST, "weak_password"),
            FlowError::InvalidUsername => (S::BAD_REQUEST, "invalid_username"),
            FlowError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
            FlowError::TooManyAttempts { retry_after, .. } => {
                return Self {
                    retry_after: Some(*retry_after),
                    ..Self::new(S::TOO_MANY_REQUESTS, "too_many_attempts", message)
                }
            }
            FlowError::InvalidCode(_) => (S::UNAUTHORIZED, "invalid_2fa_code"),
            FlowError::NoPendingLogin => (S::UNAUTHORIZED, "no_pending_login"),
            FlowError::Unauthenticated => (S::UNAUTHORIZED, "unauthenticated"),
            FlowError::ReauthenticationRequired => (S::UNAUTHORIZED, "reauthentication_required"),
            FlowError::NoSuchUser(_) | FlowError::NoSuchSession(_) => (S::NOT_FOUND, "not_found"),
            FlowError::InvalidPhone => (S::BAD_REQUEST, "invalid_phone"),
            FlowError::SmsUnavailable(_) => (S::SERVICE_UNAVAILABLE, "sms_gateway_unavailable"),
            // Not the request's fault and likely to pass (PostgreSQL restarting, a failover, SQLite's write lock
            // held too long): say so, so clients and load balancers retry instead of reporting a bug.
            FlowError::Store(store) if store.is_unavailable() => {
                tracing::warn!(error = %error, "database unavailable");
                return Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable right now; try again in a moment",
                );
            }
            FlowError::Store(_) | FlowError::Hash(_) | FlowError::SecretUnreadable | FlowError::IllegalStep { .. } => {
                tracing::error!(error = %error, "request failed");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on the server; the failure has been logged",
                );
            }
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.code, "message": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
