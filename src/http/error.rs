//! The one place where failures become HTTP answers: `{"error": "<code>", "message": "<text for a person>"}` with
//! the contract's status, and `Retry-After` on every 429. Internal causes are logged here once and never shown.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::flow::FlowError;

/// Every error code the API answers with. An enum rather than strings so the API document lists exactly the codes
/// the server can send (`ErrorBody`'s schema): a new code cannot be answered without appearing there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    NotFound,
    MethodNotAllowed,
    CrossOrigin,
    RegistrationDisabled,
    UsernameTaken,
    WeakPassword,
    InvalidUsername,
    InvalidCredentials,
    TooManyAttempts,
    #[serde(rename = "invalid_2fa_code")]
    Invalid2faCode,
    NoPendingLogin,
    Unauthenticated,
    ReauthenticationRequired,
    StepUpRequired,
    InvalidPhone,
    SmsGatewayUnavailable,
    DatabaseUnavailable,
    Internal,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// Text for a person; never a cause from inside the server.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
}

impl From<FlowError> for ApiError {
    fn from(error: FlowError) -> Self {
        use ErrorCode as E;
        use StatusCode as S;
        let message = error.to_string();
        let (status, code) = match &error {
            FlowError::BadRequest(_) => (S::BAD_REQUEST, E::BadRequest),
            FlowError::RegistrationDisabled => (S::FORBIDDEN, E::RegistrationDisabled),
            FlowError::UsernameTaken => (S::CONFLICT, E::UsernameTaken),
            FlowError::WeakPassword(_) => (S::BAD_REQUEST, E::WeakPassword),
            FlowError::InvalidUsername => (S::BAD_REQUEST, E::InvalidUsername),
            FlowError::InvalidCredentials | FlowError::WrongPassword => (S::UNAUTHORIZED, E::InvalidCredentials),
            FlowError::TooManyAttempts { retry_after, .. } => {
                return Self {
                    retry_after: Some(*retry_after),
                    ..Self::new(S::TOO_MANY_REQUESTS, E::TooManyAttempts, message)
                }
            }
            FlowError::InvalidCode(_) => (S::UNAUTHORIZED, E::Invalid2faCode),
            FlowError::NoPendingLogin => (S::UNAUTHORIZED, E::NoPendingLogin),
            FlowError::Unauthenticated => (S::UNAUTHORIZED, E::Unauthenticated),
            FlowError::ReauthenticationRequired => (S::UNAUTHORIZED, E::ReauthenticationRequired),
            FlowError::StepUpRequired => (S::UNAUTHORIZED, E::StepUpRequired),
            FlowError::NoSuchUser(_) | FlowError::NoSuchSession(_) => (S::NOT_FOUND, E::NotFound),
            FlowError::InvalidPhone => (S::BAD_REQUEST, E::InvalidPhone),
            FlowError::SmsUnavailable(_) => (S::SERVICE_UNAVAILABLE, E::SmsGatewayUnavailable),
            // Not the request's fault and likely to pass (PostgreSQL restarting, a failover, SQLite's write lock
            // held too long): say so, so clients and load balancers retry instead of reporting a bug.
            FlowError::Store(store) if store.is_unavailable() => {
                tracing::warn!(error = %error, "database unavailable");
                return Self::new(
                    S::SERVICE_UNAVAILABLE,
                    E::DatabaseUnavailable,
                    "the database is unavailable right now; try again in a moment",
                );
            }
            FlowError::Store(_) | FlowError::Hash(_) | FlowError::SecretUnreadable | FlowError::IllegalStep(_) => {
                tracing::error!(error = %error, "request failed");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    E::Internal,
                    "something went wrong on the server; the failure has been logged",
                );
            }
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.code,
            message: self.message,
        });
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
